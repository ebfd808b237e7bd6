# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Tests of the sms_otp verifier: codes, digests bound to their verification, sending and options."""

from __future__ import annotations

from collections import Counter

import pytest

from idverify.domain.errors import ConfigError
from idverify.verifiers.base import ChallengeVerifier, Outcome, VerifierDeps
from idverify.verifiers.sms_otp import SmsOtpVerifier, _new_code

PHONE = "+8613812345678"
TENANT = "acme"


@pytest.fixture
def verifier(deps: VerifierDeps) -> SmsOtpVerifier:
    return SmsOtpVerifier({}, deps)


async def _challenge(verifier, make_context, make_person, **context):
    result = await verifier.check(make_context(make_person(phone_number=PHONE), **context))
    assert result.outcome is Outcome.CHALLENGE
    assert result.challenge is not None
    return result.challenge


class TestCheck:
    def test_is_a_challenge_verifier(self, verifier: SmsOtpVerifier) -> None:
        """The engine recognises it as a step that needs an answer."""
        assert isinstance(verifier, ChallengeVerifier)
        assert (verifier.name, verifier.biometric) == ("sms_otp", False)
        assert verifier.required_fields == frozenset({"phone_number"})

    async def test_sends_a_code_and_returns_the_challenge(
        self, verifier, sender, make_context, make_person
    ) -> None:
        """One code goes to the normalized phone; the challenge carries the configured limits."""
        challenge = await _challenge(verifier, make_context, make_person)
        [(phone, code, tenant, verification_id)] = sender.sent
        assert (phone, tenant, verification_id) == (PHONE, TENANT, "a" * 32)
        assert len(code) == 6
        assert code.isdigit()
        assert (challenge.ttl_seconds, challenge.max_attempts) == (300, 5)
        assert len(challenge.salt) == 16

    async def test_destination_is_masked(self, verifier, make_context, make_person) -> None:
        """The challenge shows where the code went without the full number."""
        challenge = await _challenge(verifier, make_context, make_person)
        assert challenge.masked_destination == "138****5678"

    async def test_code_is_not_in_the_challenge(self, verifier, sender, make_context, make_person) -> None:
        """What the store keeps cannot reveal the code."""
        challenge = await _challenge(verifier, make_context, make_person)
        assert sender.last_code.encode() not in challenge.expected_digest + challenge.salt
        assert sender.last_code not in repr(challenge)

    async def test_missing_phone_fails(self, verifier, sender, make_context, make_person) -> None:
        """Without a phone the step fails with a reason, and nothing is sent."""
        result = await verifier.check(make_context(make_person(phone_number=" ")))
        assert (result.outcome, result.reason) == (Outcome.FAIL, "PHONE_REQUIRED")
        assert sender.sent == []

    @pytest.mark.parametrize("phone", ["+86 010 1234 5678", "phone", "+0123"])
    async def test_unusable_phone_fails(self, verifier, sender, make_context, make_person, phone) -> None:
        """A number that cannot receive an SMS code fails the step, and nothing is sent."""
        result = await verifier.check(make_context(make_person(phone_number=phone)))
        assert (result.outcome, result.reason) == (Outcome.FAIL, "INVALID_PHONE")
        assert sender.sent == []

    async def test_local_spelling_is_normalized(self, verifier, sender, make_context, make_person) -> None:
        """A mainland mobile typed without +86 is sent to in E.164 form."""
        await verifier.check(make_context(make_person(phone_number="138 1234 5678")))
        assert sender.sent[0][0] == PHONE

    async def test_send_failure_is_unavailable(self, verifier, sender, make_context, make_person) -> None:
        """A gateway failure means "could not decide", not a failed verification."""
        sender.fail = True
        result = await verifier.check(make_context(make_person(phone_number=PHONE)))
        assert (result.outcome, result.reason) == (Outcome.UNAVAILABLE, "SMS_SEND_FAILED")
        assert result.challenge is None

    async def test_each_challenge_has_its_own_salt(self, verifier, make_context, make_person) -> None:
        """Two challenges never share a salt, so equal codes still digest differently."""
        first = await _challenge(verifier, make_context, make_person)
        second = await _challenge(verifier, make_context, make_person)
        assert first.salt != second.salt
        assert first.expected_digest != second.expected_digest


class TestDigestAnswer:
    async def test_right_code_matches(self, verifier, sender, make_context, make_person) -> None:
        """The digest of the code that was sent equals the expected digest."""
        challenge = await _challenge(verifier, make_context, make_person)
        digest = verifier.digest_answer(TENANT, "a" * 32, challenge.salt, sender.last_code)
        assert digest == challenge.expected_digest

    @pytest.mark.parametrize(
        "spelling",
        [
            lambda code: f" {code} ",
            lambda code: f"{code[:3]} {code[3:]}",
            # Full-width digits, as a Chinese IME may type them.
            lambda code: code.translate({ord("0") + digit: 0xFF10 + digit for digit in range(10)}),
        ],
    )
    async def test_harmless_spellings_of_the_right_code_match(
        self, verifier, sender, make_context, make_person, spelling
    ) -> None:
        """Spaces and full-width digits do not turn the right code into a wrong one."""
        challenge = await _challenge(verifier, make_context, make_person)
        answer = spelling(sender.last_code)
        assert verifier.digest_answer(TENANT, "a" * 32, challenge.salt, answer) == challenge.expected_digest

    async def test_wrong_code_differs(self, verifier, sender, make_context, make_person) -> None:
        """A code off by one digit does not match."""
        challenge = await _challenge(verifier, make_context, make_person)
        code = sender.last_code
        wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
        assert verifier.digest_answer(TENANT, "a" * 32, challenge.salt, wrong) != challenge.expected_digest

    async def test_code_is_bound_to_its_verification(
        self, verifier, sender, make_context, make_person
    ) -> None:
        """The right code submitted for another verification does not match."""
        challenge = await _challenge(verifier, make_context, make_person)
        other = verifier.digest_answer(TENANT, "b" * 32, challenge.salt, sender.last_code)
        assert other != challenge.expected_digest

    async def test_code_is_bound_to_its_tenant_and_salt(
        self, verifier, sender, make_context, make_person
    ) -> None:
        """Another tenant or another challenge's salt does not reproduce the digest."""
        challenge = await _challenge(verifier, make_context, make_person)
        code = sender.last_code
        assert verifier.digest_answer("other", "a" * 32, challenge.salt, code) != challenge.expected_digest
        assert verifier.digest_answer(TENANT, "a" * 32, bytes(16), code) != challenge.expected_digest

    @pytest.mark.parametrize(
        "junk",
        ["", "abcdef", "12345a", "1" * 11, "9" * 10_000, "\ud800\udfff", "١٢٣٤٥٦", "12\x0034", "-12345"],
    )
    async def test_junk_answers_digest_without_raising(
        self, verifier, make_context, make_person, junk
    ) -> None:
        """Malformed answers get a digest like any other, and it never matches."""
        challenge = await _challenge(verifier, make_context, make_person)
        digest = verifier.digest_answer(TENANT, "a" * 32, challenge.salt, junk)
        assert isinstance(digest, bytes)
        assert digest != challenge.expected_digest

    async def test_codes_sent_under_a_longer_length_still_verify(
        self, deps, sender, make_context, make_person
    ) -> None:
        """Changing code_length does not invalidate codes already in users' hands."""
        long_codes = SmsOtpVerifier({"code_length": 8}, deps)
        challenge = await _challenge(long_codes, make_context, make_person)
        short_codes = SmsOtpVerifier({"code_length": 4}, deps)
        digest = short_codes.digest_answer(TENANT, "a" * 32, challenge.salt, sender.last_code)
        assert digest == challenge.expected_digest


class TestCodes:
    @pytest.mark.parametrize("length", [4, 6, 10])
    def test_codes_have_the_configured_length(self, length: int) -> None:
        """Leading zeros are kept, so every code has exactly the configured digits."""
        codes = [_new_code(length) for _ in range(2000)]
        assert all(len(code) == length and code.isascii() and code.isdigit() for code in codes)

    def test_digits_are_uniform(self) -> None:
        """Every digit turns up at every position about equally often (chi-square sanity check)."""
        draws = 20_000
        codes = [_new_code(6) for _ in range(draws)]
        for position in range(6):
            counts = Counter(code[position] for code in codes)
            expected = draws / 10
            chi_square = sum((counts[digit] - expected) ** 2 / expected for digit in "0123456789")
            # 9 degrees of freedom: P(chi2 > 40) is about 7e-6 for a uniform source.
            assert chi_square < 40, (position, counts)

    async def test_codes_are_uniform_through_check(self, deps, sender, make_context, make_person) -> None:
        """The codes actually sent use all ten digits in the first position, leading zero included."""
        verifier = SmsOtpVerifier({"code_length": 4}, deps)
        for _ in range(300):
            await verifier.check(make_context(make_person(phone_number=PHONE)))
        assert {code[0] for _, code, _, _ in sender.sent} == set("0123456789")


class TestOptions:
    def test_options_are_applied(self, deps) -> None:
        """Configured values replace the defaults."""
        verifier = SmsOtpVerifier({"code_length": 8, "ttl_seconds": 120, "max_attempts": 3}, deps)
        assert (verifier.code_length, verifier.ttl_seconds, verifier.max_attempts) == (8, 120, 3)

    @pytest.mark.parametrize(
        ("options", "complaint"),
        [
            ({"code_length": 3}, "code_length"),
            ({"code_length": 11}, "code_length"),
            ({"code_length": "6"}, "code_length"),
            ({"code_length": True}, "code_length"),
            ({"ttl_seconds": 0}, "ttl_seconds"),
            ({"ttl_seconds": 86_400}, "ttl_seconds"),
            ({"max_attempts": 0}, "max_attempts"),
            ({"max_attempts": 5.0}, "max_attempts"),
            ({"code_lenght": 6}, "unknown options"),
        ],
    )
    def test_bad_options_are_config_errors(self, deps, options, complaint) -> None:
        """Each invalid option fails at start-up, naming the option."""
        with pytest.raises(ConfigError, match=complaint):
            SmsOtpVerifier(options, deps)
