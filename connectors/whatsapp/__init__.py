"""What the WAHA and Meta channels share: the webhook (webhook.py), the turn it runs later
(turn.py), the inbound stream consumer (consumer.py), the output and outbox drainer (output.py)
and the formatting (format.py). Each channel's input and sender are in connectors/waha.py and
connectors/meta.py."""
