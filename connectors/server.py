"""The Rasa server, started in this process so that no secret is on its command line.

    python -m connectors.server --enable-api --port 5005 --interface 127.0.0.1 ...

(`python -m helpdesk.launch rasa`, what `make run` starts, builds these arguments). They are
`rasa run`'s own, parsed by Rasa's own argument parser, and the start-up is what `rasa run`
does (rasa/__main__.py: logging, TensorFlow environment, telemetry, plugins, structlog, then
rasa/cli/run.py with model, endpoints, credentials, port and the rest). Two things are added
here instead of on the command line, where `ps` shows them to every user of the machine:

- the HTTP API's key: the server checks `Authorization: Bearer <JWT>` (HS256) signed with
  RASA_AUTH_TOKEN, or the installation's generated `var/secrets/rasa_auth_token`
  (helpdesk.settings `rasa_api_secret`). Rasa's plain `--auth-token` is left unset, so a
  `?token=` query string (which proxies log) opens nothing: rasa/server.py `requires_auth`
  accepts only the JWT when `jwt_secret` is set and `auth_token` is not. helpdesk/rasa_api.py
  mints the JWTs.
- the logging configuration applied again once the server has started (Rasa installs its
  coloured console handler after reading `--logging-config-file`), whatever channels run.
"""
import argparse
import logging
import os
import sys
from typing import Any, List, Optional

import rasa.telemetry
import rasa.utils.io
import rasa.utils.tensorflow.environment as tf_env
from rasa.__main__ import create_argument_parser
from rasa.plugin import plugin_manager
from rasa.shared.exceptions import RasaException
from rasa.shared.utils.cli import print_error
from rasa.utils.common import configure_logging_and_warnings
from rasa.utils.log_utils import configure_structlog

from helpdesk.logs import apply_logging_file
from helpdesk.settings import load_settings, rasa_api_secret

logger = logging.getLogger(__name__)

JWT_METHOD = "HS256"
# `rasa run` options that carry a secret: refused here, the secret comes from the environment
SECRET_OPTIONS = ("--auth-token", "-t", "--jwt-secret", "--jwt-private-key", "--ssl-password")


def parse(argv: List[str]) -> argparse.Namespace:
    """`rasa run`'s arguments, with the API's JWT secret from the environment and no
    plain token."""
    for option in SECRET_OPTIONS:
        if any(a == option or a.startswith(option + "=") for a in argv):
            raise SystemExit(f"helpdesk: {option} is not accepted on the command line (ps shows it "
                             "to every user); RASA_AUTH_TOKEN in .env sets the API's key")
    args = create_argument_parser().parse_args(["run", *argv])
    args.auth_token = None
    args.jwt_secret = rasa_api_secret(load_settings())
    args.jwt_method = JWT_METHOD
    args.jwt_private_key = None
    args.server_listeners = [(_structured_logs, "after_server_start")]
    return args


async def _structured_logs(app: Any, loop: Any) -> None:
    path = os.environ.get("HELPDESK_LOGGING_CONFIG")
    if path:
        apply_logging_file(path)


def main(argv: Optional[List[str]] = None) -> None:
    """What rasa/__main__.py `main` does for `rasa run`, with `parse`'s arguments."""
    args = parse(sys.argv[1:] if argv is None else argv)
    log_level = getattr(args, "loglevel", None)
    configure_logging_and_warnings(log_level, getattr(args, "logging_config_file", None),
                                   warn_only_once=True, filter_repeated_logs=True)
    tf_env.setup_tf_environment()
    tf_env.check_deterministic_ops()
    sys.path.insert(1, os.getcwd())  # custom channels and components, as `rasa run` finds them
    try:
        rasa.utils.io.configure_colored_logging(log_level)
        result = plugin_manager().hook.configure_commandline(cmdline_arguments=args)
        endpoints_file = result[0] if result else None
        rasa.telemetry.initialize_telemetry()
        rasa.telemetry.initialize_error_reporting()
        plugin_manager().hook.init_telemetry(endpoints_file=endpoints_file)
        plugin_manager().hook.init_managers(endpoints_file=endpoints_file)
        plugin_manager().hook.init_anonymization_pipeline(endpoints_file=endpoints_file)
        configure_structlog(log_level)
        args.func(args)
    except RasaException as error:
        logger.debug("Failed to run the Rasa server.", exc_info=error)
        print_error(f"{error.__class__.__name__}: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
