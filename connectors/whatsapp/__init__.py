"""What the WAHA and Meta channels share: the webhook and turn (channel.py), the inbound stream
consumer (consumer.py), the output and outbox drainer (output.py) and the formatting (format.py)."""
