#!/usr/bin/env python3
"""Runs localstripe (https://pypi.org/project/localstripe/), a stateful Stripe
emulator we did not write, for development and tests: ./ops/local.sh up starts it on
loopback and points the Invoicer at it with STRIPE_API_BASE.

Two things differ from `localstripe --port N`, neither touching its API:
- it listens on 127.0.0.1 only (localstripe itself binds every interface);
- its store lives in memory: localstripe pickles the whole store to
  /tmp/localstripe.pickle after every change, which slows down as the store grows and
  is shared by every checkout on the machine.
Webhooks are configured through localstripe's own `POST /_config/webhooks/{id}`.
"""
import argparse
import logging

from aiohttp import web

import localstripe.resources as resources
from localstripe.server import app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()

    resources.Store.dump_to_disk = lambda self: None

    logger = logging.getLogger("aiohttp.access")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler())
    web.run_app(app, host=args.host, port=args.port, access_log=logger, print=None)


if __name__ == "__main__":
    main()
