"""RQ workers: jobs that write to Zoho Desk and Chatwoot and send follow-ups."""
