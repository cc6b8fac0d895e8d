"""Queue names, in the order a worker serves them."""
ZOHO = "zoho"
CHATWOOT = "chatwoot"
FOLLOWUPS = "followups"
DEFAULT = "default"
ALL = (ZOHO, CHATWOOT, FOLLOWUPS, DEFAULT)
