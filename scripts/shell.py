"""Talk to the running bot from the terminal, through its REST channel (`make shell`).

Unlike `rasa shell`, this starts no second Rasa server: it speaks to the one `make run`
started, with its action server, Redis tracker store and ledger.
"""
import asyncio
import getpass
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpdesk.settings import load_settings  # noqa: E402


def main() -> int:
    settings = load_settings()
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", settings.rasa_port)) != 0:
            print(
                f"No bot is listening on port {settings.rasa_port}. Start it with `make run` "
                "in another terminal, wait for 'Rasa server is up and running', then run `make shell`.",
                file=sys.stderr,
            )
            return 1
    from rasa.core.channels.console import record_messages

    sender = f"shell-{getpass.getuser()}"
    print(f"Conversation id: {sender}. Type /stop to leave.")
    asyncio.run(
        record_messages(
            sender_id=sender,
            server_url=f"http://127.0.0.1:{settings.rasa_port}",
            auth_token=settings.rasa_auth_token or "",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
