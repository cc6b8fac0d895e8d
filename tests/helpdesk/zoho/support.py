"""What the Zoho client and token tests share: a client on the fake Zoho and a ticket body."""
from dataclasses import replace

from helpdesk.config import load_zoho_config
from helpdesk.settings import load_zoho
from helpdesk.zoho import ZohoClient
from tests.workers.zoho_support import DEPARTMENT_IDS

TICKET = {"subject": "POS: la caja 2 no enciende", "departmentId": DEPARTMENT_IDS["it"],
          "description": "la caja 2 no enciende", "priority": "High", "channel": "Chat"}


def client_for(world, redis_client=None, **delivery):
    """A ZohoClient on the world's fake Zoho, with `delivery` overriding config/zoho.yml's policy."""
    policy = load_zoho_config(world.config_dir / "zoho.yml").delivery
    if delivery:
        policy = replace(policy, **delivery)
    return ZohoClient(load_zoho(), redis_client or world.redis, policy)
