"""Does the Zoho Desk portal match the configuration? (`make zoho-check`)

    python -m helpdesk.zoho.check [--json]

Lists the portal's departments (`GET /api/v1/departments`), matches each department of
`config/departments.yml` to them by its `zoho_id`, or by name when the id is empty (then it
prints the id to put in), and checks that the custom field carrying the ledger id
(`ZOHO_REF_FIELD`) is one of the ticket fields (`GET /api/v1/organizationFields?module=tickets`).
One line per thing missing; exit status 0 when nothing is, 1 when something is, 2 when the
check could not run (Zoho not configured, not reachable, credentials refused).

The outcome is kept in Redis (`helpdesk:zoho:check`) for readiness checks.
"""
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import redis

from helpdesk import redis_keys
from helpdesk.config import Department, catalog, zoho_config
from helpdesk.settings import load_settings, load_zoho
from helpdesk.zoho.client import ZohoClient
from helpdesk.zoho.errors import ZohoAuthError, ZohoError

CHECK_MEMORY_SECONDS = 7 * 24 * 3600


@dataclass
class CheckResult:
    portal: List[Dict[str, Any]] = field(default_factory=list)  # {id, name, enabled}
    resolved: Dict[str, str] = field(default_factory=dict)  # department key -> its Zoho id
    missing: List[str] = field(default_factory=list)  # one line each
    ok_lines: List[str] = field(default_factory=list)
    checked_at: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing


def _norm(name: str) -> str:
    return " ".join(str(name or "").split()).casefold()


def check_departments(portal: List[Dict[str, Any]], departments: Dict[str, Department], result: CheckResult) -> None:
    by_id = {str(d.get("id")): d for d in portal}
    by_name: Dict[str, List[Dict[str, Any]]] = {}
    for item in portal:
        by_name.setdefault(_norm(item.get("name")), []).append(item)
    for key, department in departments.items():
        label = f"department '{key}' ({department.name})"
        if department.zoho_id:
            found = by_id.get(department.zoho_id)
            if found is None:
                result.missing.append(f"{label}: zoho_id {department.zoho_id} is not a department of this portal")
            elif found.get("isEnabled") is False:
                result.missing.append(f"{label}: Zoho department {department.zoho_id} "
                                      f"('{found.get('name')}') is disabled")
            else:
                result.resolved[key] = department.zoho_id
                result.ok_lines.append(f"{label}: {department.zoho_id} ('{found.get('name')}')")
            continue
        named = by_name.get(_norm(department.name), [])
        if len(named) == 1:
            result.missing.append(f"{label}: no zoho_id in config/departments.yml; the portal's department "
                                  f"'{named[0].get('name')}' has id {named[0].get('id')}: set "
                                  f"zoho_id: \"{named[0].get('id')}\"")
        elif len(named) > 1:
            ids = ", ".join(str(item.get("id")) for item in named)
            result.missing.append(f"{label}: no zoho_id in config/departments.yml; several portal departments "
                                  f"are named '{department.name}' ({ids}): set the right one")
        else:
            result.missing.append(f"{label}: no zoho_id in config/departments.yml and no portal department "
                                  f"named '{department.name}'")


def check_ref_field(client: ZohoClient, ref_field: Optional[str], result: CheckResult) -> None:
    if not ref_field:
        result.missing.append("ZOHO_REF_FIELD is not set: the custom field that carries the ledger id "
                              "(for example cf_helpdesk_ref) is needed to create tickets")
        return
    try:
        fields = client.list_ticket_fields()
    except ZohoAuthError as error:
        result.missing.append(f"custom field {ref_field}: the ticket fields could not be read ({error}; "
                              f"the scope Desk.settings.READ is needed for this check)")
        return
    found = next((f for f in fields if f.get("apiName") == ref_field), None)
    if found is None:
        custom = ", ".join(sorted(str(f.get("apiName")) for f in fields if f.get("isCustomField"))) or "none"
        result.missing.append(f"custom field {ref_field} (ZOHO_REF_FIELD) is not a ticket field of this portal "
                              f"(its custom ticket fields: {custom})")
    elif found.get("type") not in (None, "Text"):
        result.missing.append(f"custom field {ref_field} is of type {found.get('type')}, not a single-line Text")
    else:
        result.ok_lines.append(f"custom field {ref_field}: '{found.get('displayLabel')}'")


def run_check(client: ZohoClient, departments: Dict[str, Department], ref_field: Optional[str]) -> CheckResult:
    """Raises ZohoError when Zoho cannot be asked (the check did not run)."""
    result = CheckResult(checked_at=time.time())
    portal = client.list_departments()
    result.portal = [{"id": str(d.get("id")), "name": d.get("name"), "enabled": d.get("isEnabled", True)}
                     for d in portal]
    check_departments(portal, departments, result)
    check_ref_field(client, ref_field, result)
    return result


def remember(client: redis.Redis, result: CheckResult) -> None:
    client.set(redis_keys.zoho_check(), json.dumps({**asdict(result), "ok": result.ok}),
               ex=CHECK_MEMORY_SECONDS)


def remembered(client: redis.Redis) -> Optional[Dict[str, Any]]:
    """The last check's outcome (`ok`, `missing`, `resolved`, `checked_at`), or None."""
    raw = client.get(redis_keys.zoho_check())
    return json.loads(raw) if raw else None


def main(argv: List[str]) -> int:
    as_json = "--json" in argv
    zoho = load_zoho()
    if zoho is None:
        print("Zoho Desk is not configured: set ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN and "
              "ZOHO_ORG_ID in .env (docs/zoho.md)")
        return 2
    connection = redis.Redis.from_url(load_settings().redis_url, socket_timeout=10, socket_connect_timeout=5)
    client = ZohoClient(zoho, connection, zoho_config().delivery)
    try:
        result = run_check(client, catalog().departments, zoho.ref_field)
    except ZohoError as error:
        print(f"Zoho Desk could not be checked: {error}")
        return 2
    try:
        remember(connection, result)
    except redis.RedisError as error:
        print(f"(the outcome was not kept in Redis: {error})")
    if as_json:
        print(json.dumps({**asdict(result), "ok": result.ok}, ensure_ascii=False, indent=2))
        return 0 if result.ok else 1
    print(f"Zoho Desk portal {zoho.desk_url}: {len(result.portal)} departments")
    for item in result.portal:
        print(f"  {item['id']}  {item['name']}" + ("" if item["enabled"] else "  (disabled)"))
    for line in result.ok_lines:
        print(f"ok       {line}")
    for line in result.missing:
        print(f"MISSING  {line}")
    print("Everything is configured." if result.ok else
          f"{len(result.missing)} missing: tickets for these departments wait as pending until it is fixed.")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
