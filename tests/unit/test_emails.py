"""What an address is (``shared.emails``), as registration, the ledger, the forget route and the metrics match see
it: addresses of our markets are accepted and keep their local part, their domain goes to ASCII form, every
spelling of one address has one match form, and hostile or malformed text is refused by a reason that never
quotes it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.crypto import KeyMaterial, derive_key
from shared.emailhash import EmailHasher
from shared.emails import EmailError, address_to_forget, match_key, normalise_email, spellings
from shared.errors import PermanentError
from shared.messages import MessageError, parse_message
from shared.messages.canonical import person_from_crm
from shared.privacy.erasure import mentions

ORG = "5b0c2d1e-3f4a-4b5c-9d6e-7f8091a2b3c4"
HASH = EmailHasher("local:test#match-index", derive_key(KeyMaterial("local:test", b"k" * 32), "email-hash/match-index"))


def canonical(email: str) -> bytes:
    body = {
        "schema": "webinar-registration/1", "orgId": ORG, "action": "register",
        "registrationId": "3f2a9c1e-7b4d-4e8a-a1c2-5d6e7f809a1b", "eventId": "4f2a9c1e-7b4d-4e8a-a1c2-5d6e7f809a1b",
        "attendee": {"email": email, "firstName": "Jörg", "lastName": "Müller"},
    }  # fmt: skip
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    ("given_as", "normal"),
    [
        ("Jörg.Müller@firma.de", "Jörg.Müller@firma.de"),
        ("user@bücher.de", "user@xn--bcher-kva.de"),
        ("user@BÜCHER.DE", "user@xn--bcher-kva.de"),
        ("åsa.ødegård@företag.se", "åsa.ødegård@xn--fretag-wxa.se"),
        ("иван@пример.рф", "иван@xn--e1afmkfd.xn--p1ai"),
        ("  Grace.Hopper@Example.COM ", "Grace.Hopper@example.com"),
        ("o'brien+webinar@fabrikam.example", "o'brien+webinar@fabrikam.example"),
    ],
)
def test_addresses_of_our_markets_are_accepted_with_the_domain_in_ascii(given_as: str, normal: str) -> None:
    assert normalise_email(given_as) == normal
    assert parse_message(canonical(given_as)).person.email == normal  # type: ignore[union-attr]
    assert person_from_crm("c1", email=given_as, first_name="Åsa").email == normal


@pytest.mark.parametrize(
    "bad",
    [
        "Jörg Müller", "jörg.müller", "jörg.müller@", "@firma.de", "jörg..müller@firma.de", ".jörg@firma.de",
        "jörg@firma", "jörg@-firma.de", "jörg@firma..de", "jörg müller@firma.de", "jörg@@firma.de",
        "Jörg Müller <jörg@firma.de>", '"jörg müller"@firma.de', "jörg@[192.0.2.1]", "jörg@firma.test",
    ],
)  # fmt: skip
def test_what_is_not_an_address_is_refused_without_quoting_any_part_of_it(bad: str) -> None:
    with pytest.raises(EmailError) as caught:
        normalise_email(bad)
    with pytest.raises(MessageError) as refused:
        parse_message(canonical(bad))
    with pytest.raises(PermanentError) as failed:
        person_from_crm("c1", email=bad)
    assert refused.value.field == "attendee.email"
    for text in (str(caught.value), str(refused.value), str(failed.value)):
        assert "jörg" not in text.casefold() and "firma" not in text and "müller" not in text.casefold(), text


@pytest.mark.parametrize(
    ("hostile", "rule"),
    [
        ("=HYPERLINK(1)@firma.de", "formula"),
        ("+jörg@firma.de", "formula"),
        ("-jörg@firma.de", "formula"),
        ("@jörg@firma.de", "formula"),
        ("jörg@firma.de\u202e", "U+202E"),
        ("jörg\u0000@firma.de", "U+0000"),
        ("jörg@fir\nma.de", "U+000A"),
        ("j" * 95 + "@firma.de", "maximum is 100"),
        ("user@" + "bücher." * 7 + "de", "maximum is 100"),  # 56 characters as given, 105 in ASCII form
    ],
)
def test_hostile_addresses_are_still_refused(hostile: str, rule: str) -> None:
    with pytest.raises(MessageError) as refused:
        parse_message(canonical(hostile))
    assert refused.value.field == "attendee.email" and rule in refused.value.reason
    assert "jörg" not in str(refused.value) and "firma" not in str(refused.value)


def test_every_spelling_of_one_address_has_one_match_form() -> None:
    spelt = ["user@bücher.de", "USER@BÜCHER.DE", "user@xn--bcher-kva.de", "User@XN--BCHER-KVA.DE"]
    assert len({match_key(s) for s in spelt}) == 1
    assert len({HASH(s) for s in spelt}) == 1, "keyed hashes take the match form"
    assert match_key("иван@пример.рф") == match_key("Иван@XN--E1AFMKFD.XN--P1AI")
    assert match_key("user@bücher.de") != match_key("user@bucher.de")
    # An ASCII address keeps the key it had before IDN addresses were accepted: stored indexes stay valid.
    assert match_key("Grace.Hopper@Example.COM") == "grace.hopper@example.com"
    assert match_key("300000123-deleted") == "300000123-deleted", "ON24's forgotten placeholder is no address"


def test_a_forget_finds_a_kept_body_under_either_spelling_of_the_domain() -> None:
    unicode_body = json.dumps({"attendee": {"email": "Åsa.Ødegård@Företag.se"}}).encode()  # \u escapes
    ascii_body = b'{"attendee": {"email": "asa@xn--fretag-wxa.se"}}'
    assert mentions(unicode_body, normalise_email("åsa.ødegård@FÖRETAG.SE"))
    assert mentions(ascii_body, "asa@företag.se") and not mentions(ascii_body, "asa@foretag.se")
    assert spellings("asa@företag.se") == {"asa@företag.se", "asa@xn--fretag-wxa.se"}


def test_the_forget_route_normalises_and_keeps_what_older_rules_stored_erasable() -> None:
    assert address_to_forget(" Åsa@FÖRETAG.SE ") == "Åsa@xn--fretag-wxa.se"
    assert address_to_forget("legacy@host.test") == "legacy@host.test", "refused today, maybe stored long ago"
    for bad in ("no-at-sign", "two words@firma.de", "a@b\u0000.de", "a" * 320 + "@firma.de"):
        with pytest.raises(EmailError):
            address_to_forget(bad)


# No ß: its upper case is SS, another address (IDNA 2008 keeps ß: straße.de is xn--strae-oqa.de, not strasse.de).
_SCRIPTS = ["abcdefghijklmnopqrstuvwxyzäöü", "åäöæøéabcdefghijklmnoprstuvy", "абвгдеёжзийклмнопрстуфхцчшщыэюя"]
_labels = st.sampled_from(_SCRIPTS).flatmap(lambda script: st.text(alphabet=script, min_size=1, max_size=10))
_addresses = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    st.sampled_from(_SCRIPTS).flatmap(lambda script: st.text(alphabet=script + "0123456789._", min_size=1, max_size=20))
    .filter(lambda s: s[0] not in "._" and s[-1] != "." and ".." not in s),
    st.lists(_labels, min_size=1, max_size=3),
    st.sampled_from(["de", "se", "no", "fi", "dk", "рф", "com"]),
)


@given(_addresses)
def test_any_address_of_these_scripts_has_a_stable_normal_form_and_one_match_form(address: str) -> None:
    try:
        normal = normalise_email(address)
    except EmailError as exc:  # e.g. a label IDNA 2008 refuses: never quoted
        assert address not in str(exc) and address.split("@")[0] not in str(exc)
        return
    assert normal.split("@")[1].isascii(), "the domain goes in ASCII form"
    assert normalise_email(normal) == normal, "normalising twice changes nothing"
    assert match_key(address) == match_key(normal) == match_key(address.upper()) == match_key(normal.upper())
