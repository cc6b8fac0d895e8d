"""Shared core of the helpdesk: settings, business config, ticket rules, ledger, Redis, logs.

Connectors, actions and workers import from here and never from each other.
"""
