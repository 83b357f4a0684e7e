"""Signing keys for export manifests: `autocompress keygen`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from autocompress.cli._common import app, console, user_errors


@app.command()
@user_errors
def keygen(
    private_key: Annotated[
        Path, typer.Argument(help="Where to write the private key, e.g. keys/signing.pem")
    ],
) -> None:
    """Make an Ed25519 key pair for `export --sign-key` and `verify --public-key`."""
    from autocompress.manifest import generate_keypair

    private_path, public_path = generate_keypair(private_key)
    console.print(
        f"private key: [bold]{escape(str(private_path))}[/] (mode 0600; keep it secret)\n"
        f"public key:  [bold]{escape(str(public_path))}[/] (give it to whoever verifies)",
        highlight=False,
    )
