"""Email addresses: the one place that decides what an address is, the form it is sent and stored in, and the form
two addresses are compared in.

Why one module: registration, the ledger, the forget route, contact erasure and the metrics match must all agree,
or a person registered under one spelling is not found (matched, forgotten) under another.

* What is an address: what ``email-validator`` accepts, without DNS (no network), internationalized local parts
  and IDN domains included (RFC 6531, IDNA 2008): ``Jörg.Müller@firma.de``, ``åsa.ødegård@företag.se``,
  ``иван@пример.рф``. Quoted local parts, IP-literal domains and special-use domains (``.test``, ``.local``)
  are refused: no mail system of a webinar attendee uses them.
* The normal form (:func:`normalise_email`): the local part as given (Unicode NFC, case kept) and the domain in
  its ASCII form (IDNA, lower case): ``user@bücher.de`` becomes ``user@xn--bcher-kva.de``. Mail systems that
  only take ASCII domains (many do) accept it, and it is how DNS spells the domain.
* The match form (:func:`match_key`): the normal form with the local part case-folded. ON24 compares addresses
  case-insensitively and may return the domain in Unicode or ASCII form, in any case: both give the same key.

Reasons never contain the address nor any part of it: they reach logs, the ledger and the status route.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from email_validator import EmailNotValidError, ValidatedEmail, validate_email

MAX_FORGET_CHARS = 320
"""RFC 5321's longest address: 64 characters for the local part, 255 for the domain."""
_DETAIL = re.compile(r"\s*\(.*\)|:.*$", re.DOTALL)


class EmailError(ValueError):
    """Not an email address. The message says which rule it breaks, never the value."""


def normalise_email(value: str) -> str:
    """The address in its normal form: the local part as given (NFC), the domain in ASCII (IDNA) lower case.

    Raises:
        EmailError: not an email address; the message names the rule, not the value.
    """
    checked = _validated(value.strip())
    return f"{checked.local_part}@{checked.ascii_domain.lower()}"


def address_to_forget(value: str) -> str:
    """The address a forget searches for: its normal form, or, when the validator refuses it but it is printable
    text on both sides of an ``@`` (at most 320 characters, RFC 5321), the text as given, since an address kept
    under older rules must stay erasable.

    Raises:
        EmailError: not even that.
    """
    text = value.strip()
    local, at, domain = text.rpartition("@")
    printable = all(ch.isprintable() and not ch.isspace() for ch in text)
    if not (at and local and domain and printable and len(text) <= MAX_FORGET_CHARS):
        raise EmailError(f"must be an email address (at most {MAX_FORGET_CHARS} characters)")
    try:
        return normalise_email(text)
    except EmailError:
        return text


@functools.lru_cache(maxsize=4096)
def match_key(value: str) -> str:
    """The form two addresses are compared in: ``User@Bücher.DE`` and ``user@xn--bcher-kva.de`` give the same.

    Anything that is not an address (ON24's ``{id}-deleted`` of a forgotten registrant) is compared
    case-folded, as it was given. An ASCII address is only case-folded: its normal form differs from it in
    case alone, which keeps keys (and keyed hashes) made before IDN addresses were accepted unchanged.
    """
    text = value.strip()
    if text.isascii():
        return text.casefold()
    try:
        local, _, domain = normalise_email(text).rpartition("@")
    except EmailError:
        return unicodedata.normalize("NFC", text).casefold()
    return f"{local.casefold()}@{domain}"


def spellings(value: str) -> set[str]:
    """The ways a kept message body may spell the address: as given, in normal form, with the Unicode domain."""
    text = value.strip()
    try:
        checked = _validated(text)
    except EmailError:
        return {text}
    return {text, f"{checked.local_part}@{checked.ascii_domain}", f"{checked.local_part}@{checked.domain}"}


def _validated(text: str) -> ValidatedEmail:
    """email-validator's verdict, offline: no DNS, no quoted local part, no IP literal, no display name."""
    if "@" not in text:
        raise EmailError("is not an email address: it has no @")
    try:
        return validate_email(
            text, check_deliverability=False, allow_smtputf8=True, allow_quoted_local=False,
            allow_domain_literal=False, allow_display_name=False,
        )  # fmt: skip
    except EmailNotValidError as exc:
        raise EmailError(f"is not an email address: {_rule(str(exc))}") from None


def _rule(message: str) -> str:
    """email-validator's sentence without what it quotes of the value (characters, labels, byte counts)."""
    sentence = _DETAIL.sub("", message).strip().rstrip(".")
    return (sentence[:1].lower() + sentence[1:]) or "it is malformed"
