"""Location service: the REGISTER processing rules of RFC 3261 §10.3."""

from __future__ import annotations

from typing import Any

import pytest

from ccserver.sip.registrar import (
    Binding,
    ContactRequest,
    LocationService,
    RegistrarError,
    canonical_aor,
    contact_key,
)

AOR = "sip:1001@pbx.example.com"
PHONE = "sip:1001@192.0.2.10:5060"
SOFTPHONE = "sip:1001@198.51.100.7:50123;transport=tcp"
T0 = 1_700_000_000.0


class Phone:
    """One UA registering the same AOR: keeps its Call-ID and counts CSeq (§10.2.4)."""

    def __init__(self, service: LocationService, call_id: str = "reg-1@192.0.2.10") -> None:
        self.service = service
        self.call_id = call_id
        self.cseq = 0

    def register(
        self,
        *contacts: ContactRequest,
        now: float = T0,
        expires: int | None = None,
        wildcard: bool = False,
        **kwargs: Any,
    ) -> list[Binding]:
        self.cseq += 1
        return self.service.register(
            AOR,
            contacts,
            wildcard=wildcard,
            header_expires=expires,
            call_id=self.call_id,
            cseq=self.cseq,
            source=("192.0.2.10", 5060),
            transport="UDP",
            now=now,
            **kwargs,
        )


@pytest.fixture
def service() -> LocationService:
    return LocationService(default_expires=3600, min_expires=60, max_expires=7200, max_contacts=3)


# --------------------------------------------------------------------------- add / refresh / remove


def test_first_registration_uses_default_expires(service: LocationService) -> None:
    [binding] = Phone(service).register(ContactRequest(PHONE))
    assert binding.aor == AOR
    assert binding.contact == PHONE
    assert binding.expires_in(T0) == 3600
    assert binding.source == ("192.0.2.10", 5060)
    assert binding.transport == "UDP"
    assert binding.registered_at == T0
    assert service.lookup(AOR, T0) == [binding]
    assert len(service) == 1


def test_expires_precedence_contact_then_header_then_default(service: LocationService) -> None:
    phone = Phone(service)
    [b] = phone.register(ContactRequest(PHONE, expires=120), expires=600)
    assert b.expires_in(T0) == 120
    [b] = phone.register(ContactRequest(PHONE), expires=600)
    assert b.expires_in(T0) == 600


def test_expires_is_clamped_to_max(service: LocationService) -> None:
    [b] = Phone(service).register(ContactRequest(PHONE, expires=2**32 + 5))
    assert b.expires_in(T0) == 7200


def test_refresh_updates_the_same_binding(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest(PHONE, expires=300))
    [b] = phone.register(ContactRequest(PHONE, expires=600), now=T0 + 200)
    assert b.expires_at == T0 + 800
    assert b.cseq == 2
    assert b.registered_at == T0 + 200
    assert len(service) == 1


def test_refresh_written_differently_is_the_same_contact(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest("sip:1001@192.0.2.10"))
    bindings = phone.register(ContactRequest("sip:1001@192.0.2.10:5060;transport=UDP;ob"))
    assert len(bindings) == 1
    assert bindings[0].contact == "sip:1001@192.0.2.10:5060;transport=UDP;ob"


def test_new_call_id_after_reboot_refreshes_regardless_of_cseq(service: LocationService) -> None:
    Phone(service, "before").register(ContactRequest(PHONE), ContactRequest(PHONE))
    # The rebooted phone starts its CSeq again at 1 with a new Call-ID: accepted.
    [b] = Phone(service, "after").register(ContactRequest(PHONE))
    assert b.call_id == "after" and b.cseq == 1


def test_expires_zero_removes_and_reports(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest(PHONE), ContactRequest(SOFTPHONE))
    removed: list[Binding] = []
    left = phone.register(ContactRequest(PHONE, expires=0), removed=removed)
    assert [b.contact for b in left] == [SOFTPHONE]
    assert [b.contact for b in removed] == [PHONE]
    removed.clear()
    assert phone.register(ContactRequest(SOFTPHONE), expires=0, removed=removed) == []
    assert [b.contact for b in removed] == [SOFTPHONE]
    assert service.lookup(AOR, T0) == []
    assert len(service) == 0
    assert service.get_timer() is None


def test_removing_an_unknown_contact_is_a_no_op(service: LocationService) -> None:
    assert Phone(service).register(ContactRequest(PHONE, expires=0)) == []


def test_query_without_contacts_lists_bindings(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest(PHONE))
    [b] = phone.register(now=T0 + 100)
    assert b.expires_in(T0 + 100) == 3500


def test_several_contacts_per_aor_from_several_devices(service: LocationService) -> None:
    Phone(service, "desk").register(ContactRequest(PHONE))
    bindings = Phone(service, "soft").register(ContactRequest(SOFTPHONE), now=T0 + 5)
    assert {b.contact for b in bindings} == {PHONE, SOFTPHONE}
    assert {b.call_id for b in bindings} == {"desk", "soft"}


def test_aor_is_canonicalised(service: LocationService) -> None:
    Phone(service).register(ContactRequest(PHONE))
    assert len(service.lookup("sip:%31001@PBX.Example.COM;user=phone", T0)) == 1
    assert service.lookup("sip:1001@other.example.com", T0) == []
    assert service.lookup("no scheme", T0) == []


def test_all_bindings_spans_aors(service: LocationService) -> None:
    Phone(service).register(ContactRequest(PHONE))
    service.register(
        "sip:1002@pbx.example.com",
        [ContactRequest("sip:1002@192.0.2.11")],
        wildcard=False,
        header_expires=None,
        call_id="x",
        cseq=1,
        source=("192.0.2.11", 5060),
        transport="UDP",
        now=T0,
    )
    assert [b.aor for b in service.all_bindings(T0)] == [AOR, "sip:1002@pbx.example.com"]
    assert service.all_bindings(T0 + 3600) == []


# --------------------------------------------------------------------------- ordering


def test_lookup_orders_by_q_then_most_recent(service: LocationService) -> None:
    Phone(service, "a").register(ContactRequest("sip:a@192.0.2.1", q=0.5), now=T0)
    Phone(service, "b").register(ContactRequest("sip:b@192.0.2.2", q=0.5), now=T0 + 1)
    Phone(service, "c").register(ContactRequest("sip:c@192.0.2.3", q=1.0), now=T0 + 2)
    got = [b.contact for b in service.lookup(AOR, T0 + 3)]
    assert got == ["sip:c@192.0.2.3", "sip:b@192.0.2.2", "sip:a@192.0.2.1"]


def test_lookup_hides_expired_before_collection(service: LocationService) -> None:
    Phone(service).register(ContactRequest(PHONE, expires=60))
    assert service.lookup(AOR, T0 + 60) == []
    assert len(service) == 1  # still waiting for remove_expired


# --------------------------------------------------------------------------- wildcard


def test_wildcard_removes_everything(service: LocationService) -> None:
    Phone(service, "desk").register(ContactRequest(PHONE))
    Phone(service, "soft").register(ContactRequest(SOFTPHONE))
    removed: list[Binding] = []
    assert Phone(service, "third").register(wildcard=True, expires=0, removed=removed) == []
    assert {b.contact for b in removed} == {PHONE, SOFTPHONE}
    assert service.lookup(AOR, T0) == []
    assert service.get_timer() is None


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [((), None), ((), 3600), ((ContactRequest(PHONE),), 0)],
    ids=["no-expires", "nonzero-expires", "with-other-contact"],
)
def test_wildcard_rules(
    service: LocationService, contacts: tuple[ContactRequest, ...], expires: int | None
) -> None:
    with pytest.raises(RegistrarError) as info:
        Phone(service).register(*contacts, wildcard=True, expires=expires)
    assert info.value.status == 400


def test_wildcard_obeys_cseq_order(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest(PHONE))
    phone.cseq = 0  # a stale "*" from the same Call-ID
    with pytest.raises(RegistrarError) as info:
        phone.register(wildcard=True, expires=0)
    assert info.value.status == 500
    assert len(service.lookup(AOR, T0)) == 1


# --------------------------------------------------------------------------- errors


def test_interval_too_brief(service: LocationService) -> None:
    with pytest.raises(RegistrarError) as info:
        Phone(service).register(ContactRequest(PHONE, expires=30))
    assert (info.value.status, info.value.reason) == (423, "Interval Too Brief")
    assert info.value.min_expires == 60
    with pytest.raises(RegistrarError):
        Phone(service).register(ContactRequest(PHONE), expires=59)
    [b] = Phone(service).register(ContactRequest(PHONE, expires=60))
    assert b.expires_in(T0) == 60


def test_out_of_order_cseq_is_500_and_changes_nothing(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest(PHONE, expires=600))
    phone.cseq = 0  # the next REGISTER carries CSeq 1 again: a retransmission or reorder
    with pytest.raises(RegistrarError) as info:
        phone.register(ContactRequest(SOFTPHONE), ContactRequest(PHONE, expires=0))
    assert info.value.status == 500
    [b] = service.lookup(AOR, T0)
    assert b.contact == PHONE and b.expires_at == T0 + 600


def test_a_failing_contact_leaves_all_bindings_untouched(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest(PHONE))
    with pytest.raises(RegistrarError):
        phone.register(ContactRequest(PHONE, expires=0), ContactRequest(SOFTPHONE, expires=10))
    assert [b.contact for b in service.lookup(AOR, T0)] == [PHONE]


@pytest.mark.parametrize(
    ("contact", "expires"),
    [
        (ContactRequest(PHONE, expires=-1), None),
        (ContactRequest(PHONE), -5),
        (ContactRequest(PHONE, q=1.5), None),
        (ContactRequest("192.0.2.10"), None),
        (ContactRequest("sip:1001@192.0.2.10:99999"), None),
        (ContactRequest("sip:1001@[2001:db8::1"), None),
        (ContactRequest("sip:1001@"), None),
    ],
)
def test_bad_requests(
    service: LocationService, contact: ContactRequest, expires: int | None
) -> None:
    with pytest.raises(RegistrarError) as info:
        Phone(service).register(contact, expires=expires)
    assert info.value.status == 400


def test_bad_aor_is_400(service: LocationService) -> None:
    with pytest.raises(RegistrarError) as info:
        service.register(
            "1001",
            [],
            wildcard=False,
            header_expires=None,
            call_id="x",
            cseq=1,
            source=("192.0.2.10", 5060),
            transport="UDP",
            now=T0,
        )
    assert info.value.status == 400


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError):
        LocationService(min_expires=600, default_expires=300)
    with pytest.raises(ValueError):
        LocationService(max_contacts=0)
    with pytest.raises(ValueError):
        LocationService(min_expires=7200, default_expires=7200)


# --------------------------------------------------------------------------- max_contacts


def test_max_contacts_drops_the_least_recently_refreshed(service: LocationService) -> None:
    phones = [Phone(service, f"boot-{i}") for i in range(3)]
    for i, phone in enumerate(phones):
        phone.register(ContactRequest(f"sip:1001@192.0.2.{i}"), now=T0 + i)
    # boot-0 refreshes, so boot-1 is now the stalest.
    phones[0].register(ContactRequest("sip:1001@192.0.2.0"), now=T0 + 10)
    removed: list[Binding] = []
    bindings = Phone(service, "boot-3").register(
        ContactRequest("sip:1001@192.0.2.3"), now=T0 + 11, removed=removed
    )
    assert [b.contact for b in removed] == ["sip:1001@192.0.2.1"]
    assert {b.contact for b in bindings} == {
        "sip:1001@192.0.2.0",
        "sip:1001@192.0.2.2",
        "sip:1001@192.0.2.3",
    }
    assert len(service) == 3


def test_one_register_with_too_many_contacts_is_403(service: LocationService) -> None:
    contacts = [ContactRequest(f"sip:1001@192.0.2.{i}") for i in range(4)]
    with pytest.raises(RegistrarError) as info:
        Phone(service).register(*contacts)
    assert info.value.status == 403
    assert service.lookup(AOR, T0) == []


def test_expired_bindings_do_not_count_towards_the_limit(service: LocationService) -> None:
    for i in range(3):
        Phone(service, f"old-{i}").register(ContactRequest(f"sip:1001@192.0.2.{i}", expires=60))
    removed: list[Binding] = []
    Phone(service, "new").register(ContactRequest(PHONE), now=T0 + 61, removed=removed)
    assert removed == []
    assert len(service.remove_expired(T0 + 61)) == 3
    assert [b.contact for b in service.lookup(AOR, T0 + 61)] == [PHONE]


# --------------------------------------------------------------------------- instance-id


def test_same_instance_at_a_new_address_replaces_the_binding(service: LocationService) -> None:
    instance = '"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"'
    Phone(service, "a").register(ContactRequest(PHONE, instance=instance))
    removed: list[Binding] = []
    [b] = Phone(service, "b").register(
        ContactRequest("sip:1001@203.0.113.9:5060", instance=instance), removed=removed
    )
    assert b.contact == "sip:1001@203.0.113.9:5060" and b.instance == instance
    assert [r.contact for r in removed] == [PHONE]


def test_duplicate_contacts_in_one_request_last_wins(service: LocationService) -> None:
    [b] = Phone(service).register(
        ContactRequest(PHONE, expires=600, instance="i"),
        ContactRequest("sip:1001@192.0.2.10", expires=900),
    )
    assert b.expires_in(T0) == 900
    assert Phone(service, "z").register(
        ContactRequest("sip:x@192.0.2.99", instance="j"),
        ContactRequest("sip:y@192.0.2.98", instance="j", expires=0),
    ) == [b]


# --------------------------------------------------------------------------- expiry and timer


def test_remove_expired_and_timer(service: LocationService) -> None:
    assert service.get_timer() is None
    assert service.remove_expired(T0) == []
    Phone(service, "desk").register(ContactRequest(PHONE, expires=120))
    Phone(service, "soft").register(ContactRequest(SOFTPHONE, expires=300))
    assert service.get_timer() == T0 + 120
    assert service.remove_expired(T0 + 119) == []
    [gone] = service.remove_expired(T0 + 120)
    assert gone.contact == PHONE
    assert service.get_timer() == T0 + 300
    [gone] = service.remove_expired(T0 + 1000)
    assert gone.contact == SOFTPHONE
    assert service.get_timer() is None
    assert len(service) == 0
    assert service.all_bindings(T0) == []


def test_refresh_moves_the_timer(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest(PHONE, expires=120))
    phone.register(ContactRequest(PHONE, expires=600), now=T0 + 100)
    assert service.get_timer() == T0 + 700
    assert service.remove_expired(T0 + 120) == []
    assert len(service.lookup(AOR, T0 + 120)) == 1


def test_unregister_clears_the_timer(service: LocationService) -> None:
    phone = Phone(service)
    phone.register(ContactRequest(PHONE, expires=120))
    phone.register(ContactRequest(PHONE, expires=0))
    assert service.get_timer() is None
    assert service.remove_expired(T0 + 1000) == []


def test_timer_heap_stays_bounded_under_refreshes() -> None:
    service = LocationService()
    phone = Phone(service)
    for i in range(1000):
        phone.register(ContactRequest(PHONE), now=T0 + i)
    assert len(service._heap) <= 2 * len(service) + 65
    assert service.get_timer() == T0 + 999 + 3600


def test_expires_in_never_reports_zero_for_a_live_binding() -> None:
    service = LocationService()
    [b] = Phone(service).register(ContactRequest(PHONE), now=T0 + 0.123)
    assert b.expires_in(T0 + 0.123) == 3600
    assert b.expires_in(T0 + 3600.0) == 1
    assert b.expires_in(T0 + 4000) == 0


# --------------------------------------------------------------------------- URI helpers


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:1001@192.0.2.10", "SIP:1001@192.0.2.10:5060"),
        ("sip:1001@Host.Example.com", "sip:1001@host.example.com;transport=udp"),
        ("sip:%31001@h", "sip:1001@h"),
        ("sips:1001@h", "sips:1001@h:5061;transport=TCP"),
        ("sip:1001:pw@h", "sip:1001@h"),
        ("sip:1001@[2001:DB8::1]", "sip:1001@[2001:db8::1]:5060"),
        ("sip:1001;phone-context=x@h;lr?Subject=hi", "sip:1001;phone-context=x@h"),
    ],
)
def test_contact_keys_that_match(a: str, b: str) -> None:
    assert contact_key(a) == contact_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:1001@h", "sip:1002@h"),
        ("sip:Alice@h", "sip:alice@h"),
        ("sip:1001@h", "sip:1001@h:5070"),
        ("sip:1001@h", "sip:1001@h;transport=tcp"),
        ("sip:1001@h", "sips:1001@h"),
    ],
)
def test_contact_keys_that_differ(a: str, b: str) -> None:
    assert contact_key(a) != contact_key(b)


def test_canonical_aor() -> None:
    assert canonical_aor("SIP:%41lice@Example.COM;user=phone?x=y") == "sip:Alice@example.com"
    assert canonical_aor("sip:alice@example.com:5070") == "sip:alice@example.com:5070"
    assert canonical_aor("TEL:+15551234;phone-context=x") == "tel:+15551234"
