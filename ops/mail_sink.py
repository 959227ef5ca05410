#!/usr/bin/env python3
"""Tally's local SMTP sink: accepts every message on loopback and stores each one,
exactly as received, as a single .eml file in --dir (written to a temporary name
and renamed, so a reader never sees half a message)."""
import argparse
import asyncio
import os
import signal
import time
import uuid

from aiosmtpd.controller import Controller


class EmlDirectory:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time_ns()}-{uuid.uuid4().hex}.eml"
        temporary = os.path.join(self.directory, "." + name + ".tmp")
        headers = (
            f"X-Tally-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Tally-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        with open(temporary, "wb") as file:
            file.write(headers + envelope.original_content)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=26025)
    parser.add_argument("--dir", required=True, help="folder that receives one .eml per message")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(EmlDirectory(args.dir), hostname=args.host, port=args.port,
                            data_size_limit=64 * 1024 * 1024)
    controller.start()
    print(f"SMTP sink on {args.host}:{args.port}, writing to {args.dir}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
