"""Shared by the baseline servers: flags and the one server context every target uses."""

from __future__ import annotations

import argparse
import ssl


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True, help="PEM with key and chain")
    p.add_argument("--tickets", type=int, default=1, help="TLS 1.3 tickets per handshake (trioecho's default: 1)")
    return p.parse_args()


def server_context(cert: str, tickets: int) -> ssl.SSLContext:
    """What a user would write: stdlib defaults, the same certificate and ticket count as trioecho."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert)
    ctx.num_tickets = tickets
    return ctx
