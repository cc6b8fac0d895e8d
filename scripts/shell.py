"""Talk to the running bot from the terminal, through its REST channel (`make shell`).

Unlike `rasa shell`, this starts no second Rasa server: it speaks to the one `make run`
started, with its action server, Redis tracker store and ledger. The REST channel must be on
(REST_CHANNEL_ENABLED=true in .env); each message carries its token as `Authorization: Bearer`
(helpdesk.rasa_api `rest_message`), never in the URL.
"""
import getpass
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpdesk.rasa_api import RasaError, RasaRejected, rest_message  # noqa: E402
from helpdesk.settings import load_settings, rest_channel_enabled  # noqa: E402

TURN_ON = ("The REST channel is off: set REST_CHANNEL_ENABLED=true in .env, restart `make run`, "
           "then run `make shell` again.")


def show(message: dict) -> None:
    if message.get("text"):
        print(f"bot: {message['text']}")
    for button in message.get("buttons") or []:
        print(f"     [{button.get('title')}]  {button.get('payload')}")
    if message.get("image"):
        print(f"     (image) {message['image']}")
    if message.get("attachment"):
        print(f"     (file) {message['attachment']}")


def main() -> int:
    settings = load_settings()
    if not rest_channel_enabled():
        print(TURN_ON, file=sys.stderr)
        return 1
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", settings.rasa_port)) != 0:
            print(
                f"No bot is listening on port {settings.rasa_port}. Start it with `make run` "
                "in another terminal, wait for 'Rasa server is up and running', then run `make shell`.",
                file=sys.stderr,
            )
            return 1
    sender = f"shell-{getpass.getuser()}"
    print(f"Conversation id: {sender}. Type /stop (or Ctrl-D) to leave.")
    while True:
        try:
            text = input("you: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text == "/stop":
            return 0
        if not text:
            continue
        try:
            for message in rest_message(sender, text, settings=settings):
                show(message)
        except RasaRejected as error:
            if error.status == 404:
                print(TURN_ON, file=sys.stderr)
            elif error.status == 401:
                print("The bot refused the REST token: the shell and `make run` must read the same "
                      ".env (REST_CHANNEL_TOKEN) and var/ (HELPDESK_VAR_DIR).", file=sys.stderr)
            else:
                print(f"The bot refused the message: {error}", file=sys.stderr)
            return 1
        except RasaError as error:
            print(f"No answer from the bot: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
