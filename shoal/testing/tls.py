"""Throwaway certificates for trying and testing peer TLS (needs ``openssl``).

``make_pki(directory)`` writes a CA and one certificate per name, each
valid for loopback (``IP:127.0.0.1``, ``DNS:localhost``) and one day::

    pki = make_pki(tmp_path, names=("n1", "n2"))
    node = shoal.Node("n1", tls_cert=pki.cert("n1"), tls_key=pki.key("n1"),
                      tls_ca=pki.ca)

Never use these outside tests: the keys are unencrypted and short-lived.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "make_pki"]

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True, slots=True)
class Pki:
    """Where :func:`make_pki` wrote its files."""

    directory: Path
    ca: Path

    def cert(self, name: str) -> Path:
        """The certificate of ``name``."""
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        """The private key of ``name``."""
        return self.directory / f"{name}.key"


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed (Debian: apt-get install openssl)")
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_pki(directory: Path, names: Iterable[str] = ("node",), *, ca_name: str = "ca") -> Pki:
    """Write a CA (``<ca_name>.pem``) and a certificate and key per name.

    Raises:
        RuntimeError: openssl is missing or failed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / f"{ca_name}.pem", directory / f"{ca_name}.key"
    _openssl("req", "-x509", *_EC, "-days", "1", "-subj", f"/CN=shoal test {ca_name}",
             "-keyout", str(ca_key), "-out", str(ca))
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in names:
        request = directory / f"{name}.csr"
        _openssl("req", *_EC, "-subj", f"/CN={name}", "-keyout", str(directory / f"{name}.key"),
                 "-out", str(request))
        _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", "1", "-extfile", str(extensions),
                 "-out", str(directory / f"{name}.pem"))
    return Pki(directory, ca)
