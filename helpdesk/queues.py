"""Every RQ queue name and job path, in one place.

Job paths are strings RQ stores in Redis with each job: a job queued before an upgrade runs
the function at this path, so a path changes only with a module kept at the old one.
"""
# queue names, in the order a worker serves them
ZOHO = "zoho"
CHATWOOT = "chatwoot"
FOLLOWUPS = "followups"
DEFAULT = "default"
ALL = (ZOHO, CHATWOOT, FOLLOWUPS, DEFAULT)

# zoho: delivery of a ledger ticket and what arrives after it (helpdesk/zoho/queue.py)
DELIVER_TICKET = "workers.zoho_jobs.deliver_ticket"
ADD_TO_TICKET = "workers.zoho_jobs.add_to_ticket"
# default: telling the reporter (workers/announcements.py)
ANNOUNCE_DELIVERED = "workers.announcements.announce_delivered"
ANNOUNCE_STATUS = "workers.announcements.announce_status"
# zoho, periodic (workers/zoho_periodic.py)
RECONCILE_DELIVERIES = "workers.zoho_periodic.reconcile_deliveries"
POLL_TICKET_STATUSES = "workers.zoho_periodic.poll_ticket_statuses"
# chatwoot: the mirror's outbox and the hand-back to the bot (workers/chatwoot_jobs.py)
DRAIN_CHATWOOT_OUTBOX = "workers.chatwoot_jobs.drain_outbox"
RESUME_CONVERSATION = "workers.chatwoot_jobs.resume_conversation"
# chatwoot, periodic: drain jobs again for outboxes whose jobs used their retries
RECOVER_CHATWOOT_MIRRORS = "workers.chatwoot_jobs.recover_mirrors"
# default, periodic: deleting what is older than config/retention.yml (workers/retention_jobs.py)
RUN_RETENTION = "workers.retention_jobs.run_retention"
# default: the support team told of trouble on the WhatsApp path (workers/whatsapp_jobs.py)
NOTIFY_WHATSAPP = "workers.whatsapp_jobs.notify"
# followups (workers/followup_jobs.py)
FOLLOWUP_STEP = "workers.followup_jobs.followup_step"
CLOSE_THREAD = "workers.followup_jobs.close_thread"

JOBS = (DELIVER_TICKET, ADD_TO_TICKET, ANNOUNCE_DELIVERED, ANNOUNCE_STATUS, RECONCILE_DELIVERIES,
        POLL_TICKET_STATUSES, DRAIN_CHATWOOT_OUTBOX, RESUME_CONVERSATION, FOLLOWUP_STEP, CLOSE_THREAD,
        RUN_RETENTION, NOTIFY_WHATSAPP, RECOVER_CHATWOOT_MIRRORS)
