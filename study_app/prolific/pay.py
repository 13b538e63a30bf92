"""Paying Prolific participants from what the app knows: approvals by the study's
exclusion rules, fixed screen-out payments, bonuses from the stored answers (issue 21).

Money moves at most once. Each screen-out or bonus is a :class:`ProlificPayment` row per
session, committed as "sent" *before* the call that pays: if the command dies, the
network drops or Prolific answers 5xx after the money left, the next run finds the row
and does not pay again (it lists it as unconfirmed, to check on Prolific). A bulk bonus is
two calls, as Prolific makes it: set up (nothing paid; its id recorded as "set_up") and
pay (Prolific documents it as not idempotent, so it is never retried on 5xx: see
``ProlificClient.request``). A set-up bonus that was never sent is paid by the next run.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from artifact_schemas.validity import SessionFacts, ValidityRules
from study_app.db import db
from study_app.export import validity_facts
from study_app.models import (
    COMPLETED,
    SCREENED_OUT,
    ProlificPayment,
    Response,
    Study,
    StudySession,
    Trial,
    utcnow,
)
from study_app.packages import package_view
from study_app.prolific.client import ProlificClient, ProlificError
from study_app.prolific.study import MINIMUM_PER_HOUR, matched_submissions, paying_study_ids
from study_app.sessions import pid_hash

AWAITING_REVIEW = "AWAITING REVIEW"


class PaymentConflict(Exception):
    """Another run recorded a payment for one of these sessions meanwhile (the timer and a
    researcher at once): nothing was sent by this run."""


# Which completed sessions are approved (and paid bonuses) without a look: the one
# definition of valid data (headphone screening, attention checks, every clip heard,
# median RT), which the analysis excludes by too (analysis.exclusions.ExclusionRules).
ApprovalRules = ValidityRules


def _not_its_session(study: Study, prolific_id: str, sub: dict[str, Any], sess: StudySession) -> str | None:
    """Why ``sess`` is not the session of submission ``sub`` of Prolific study
    ``prolific_id``, or ``None`` when PROLIFIC_PID, SESSION_ID and STUDY_ID all agree.

    Prolific pays a submission; the app knows a session. Only a session opened with the
    submission's own SESSION_ID, by its participant, for this study, earns that
    submission anything: a session found by the Prolific id alone may be another attempt
    (a screened-out participant who came back with a made-up SESSION_ID), and one that
    arrived with another study's STUDY_ID and submission id got that other study's
    submission approved (issue 31.2, 31.4).
    """
    if sess.prolific_session_id != str(sub.get("id")):
        return (
            f"s{sess.id} was not opened with this submission's SESSION_ID "
            "(found by Prolific id only: another attempt?)"
        )
    participant = sub.get("participant_id")
    if not participant or pid_hash(study, str(participant)) != sess.participant.pid_hash:
        return f"s{sess.id} arrived with another PROLIFIC_PID than this submission's participant"
    if sess.prolific_study_id != prolific_id or sub.get("study_id", prolific_id) != prolific_id:
        return f"s{sess.id} arrived with STUDY_ID {sess.prolific_study_id!r}, not this study's {prolific_id}"
    return None


def _verdict(sess: StudySession | None, facts: SessionFacts | None, rules: ApprovalRules) -> str | None:
    """``None`` when the submission may be approved, else why it needs a person's look:
    not completed, or every rule of ``rules`` it fails (``validity_facts``)."""
    if sess is None or facts is None:
        return "no session here with this submission or Prolific id (a shared completion code?)"
    if sess.status == SCREENED_OUT:
        return f"s{sess.id} was screened out: pay with --pay-screen-outs, or approve by hand"
    if sess.status != COMPLETED:
        return f"s{sess.id} is '{sess.status}', not completed"
    reasons = rules.reasons(facts)
    return f"s{sess.id} " + "; ".join(reasons) if reasons else None


@dataclass
class ApprovalResult:
    approved: list[str] = field(default_factory=list)  # submission ids
    review: list[str] = field(default_factory=list)  # "submission: why"
    dry_run: bool = False
    rules: str = ""  # the rules approved by (ValidityRules.describe)


def approve_submissions(
    study: Study,
    client: ProlificClient,
    rules: ApprovalRules = ApprovalRules(),
    *,
    dry_run: bool = False,
    prolific_study_ids: list[str] | None = None,
) -> ApprovalResult:
    """Approve every AWAITING REVIEW submission of this study on Prolific
    (:func:`~study_app.prolific.study.paying_study_ids`) whose session here is its own (PID,
    SESSION_ID and STUDY_ID agree), completed and passes ``rules``; list the others with
    the reason. Approving pays the study's reward; a submission Prolific has already
    approved is no longer awaiting review, so a second run approves nothing again."""
    facts = validity_facts(study)
    result = ApprovalResult(dry_run=dry_run, rules=rules.describe())
    to_approve: dict[str, list[str]] = {}
    ids = paying_study_ids(study, prolific_study_ids)
    for prolific_id, sub, sess in matched_submissions(study, client, ids):
        if sub.get("status") != AWAITING_REVIEW:
            continue
        why = _not_its_session(study, prolific_id, sub, sess) if sess is not None else None
        why = why or _verdict(sess, facts.get(sess.id) if sess else None, rules)
        if why is None:
            to_approve.setdefault(prolific_id, []).append(str(sub["id"]))
        else:
            result.review.append(f"{sub['id']}: {why}")
    for prolific_id, ids in to_approve.items():
        if not dry_run:
            client.bulk_approve(prolific_id, ids)
        result.approved += ids
    return result


@dataclass
class PaymentResult:
    kind: str
    paid: list[str] = field(default_factory=list)  # "submission amount"
    already: list[str] = field(default_factory=list)  # paid by an earlier run
    unconfirmed: list[str] = field(default_factory=list)  # sent, answer lost: check Prolific
    csv: str = ""  # the bonus CSV (participant_id,amount), for the dry run
    total_cents: int = 0
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False


def _records(study: Study, kind: str) -> dict[int, ProlificPayment]:
    rows = db.session.scalars(
        select(ProlificPayment).where(ProlificPayment.study_id == study.id, ProlificPayment.kind == kind)
    )
    return {r.session_id: r for r in rows}


def _mark(rows: Iterable[ProlificPayment], state: str, bulk_id: str | None = None) -> None:
    for row in rows:
        row.state = state
        row.updated_at = utcnow()
        if bulk_id is not None:
            row.bulk_id = bulk_id
    db.session.commit()


def _sort_out(result: PaymentResult, record: ProlificPayment) -> None:
    line = f"{record.submission_id} {record.amount_cents / 100:.2f}"
    if record.state == "paid":
        result.already.append(line)
    elif record.state == "sent":
        result.unconfirmed.append(f"{line} (bulk {record.bulk_id or '-'})")


def pay_screen_outs(
    study: Study,
    client: ProlificClient,
    *,
    dry_run: bool = False,
    prolific_study_ids: list[str] | None = None,
) -> PaymentResult:
    """Pay the configured fixed reward to screened-out sessions whose Prolific submission is
    still ACTIVE (the participant closed the tab instead of going back with the
    screened-out code; those who went back were paid by the code itself)."""
    settings = (study.prolific or {}).get("settings") or {}
    reward = settings.get("screen_out_reward")
    if reward is None:
        raise ValueError(
            f"'{study.slug}' has no screen_out_reward: set it in the Prolific settings before "
            "--create (Prolific pays screen-outs only in studies created with custom screening)"
        )
    cents = round(float(reward) * 100)
    result = PaymentResult("screen_out", dry_run=dry_run)
    records = _records(study, "screen_out")
    due: dict[str, list[tuple[StudySession, str]]] = {}
    minutes: list[float] = []
    for prolific_id, sub, sess in matched_submissions(
        study, client, paying_study_ids(study, prolific_study_ids)
    ):
        if sess is None or sess.status != SCREENED_OUT:
            continue
        if sess.id in records:
            _sort_out(result, records[sess.id])
            continue
        if sub.get("status") != "ACTIVE":
            continue
        mismatch = _not_its_session(study, prolific_id, sub, sess)
        if mismatch is not None:
            result.warnings.append(f"{sub['id']} not paid: {mismatch}")
            continue
        due.setdefault(prolific_id, []).append((sess, str(sub["id"])))
        if sess.finished_at is not None:
            minutes.append((sess.finished_at - sess.started_at).total_seconds() / 60)
    if minutes:
        median = statistics.median(minutes)
        floor = MINIMUM_PER_HOUR[settings.get("currency", "GBP")] * median / 60
        if reward < floor:
            result.warnings.append(
                f"screen_out_reward {reward:.2f} is under Prolific's minimum for the median "
                f"{median:.1f} min these participants spent ({floor:.2f}): Prolific may refuse it"
            )
    for prolific_id, pairs in due.items():
        ids = [sub_id for _, sub_id in pairs]
        result.paid += [f"{i} {cents / 100:.2f}" for i in ids]
        result.total_cents += cents * len(ids)
        if dry_run:
            continue
        rows = _claim(
            study, "screen_out", [(sess, sub_id, cents) for sess, sub_id in pairs], "screen_out_reward"
        )
        _mark(rows, "sent")
        try:
            client.screen_out(prolific_id, ids, float(reward))
        except ProlificError as exc:
            if exc.refused:  # nothing was paid: no record, so a later run can try again
                for row in rows:
                    db.session.delete(row)
                db.session.commit()
            raise
        _mark(rows, "paid")
    return result


def _claim(
    study: Study, kind: str, entries: list[tuple[StudySession, str, int]], rule: str
) -> list[ProlificPayment]:
    """This run's payment rows, one per (session, submission, cents), written before any
    call: the unique (session, kind) makes a concurrent run's rows collide here, before
    money moves, not after."""
    rows = [
        ProlificPayment(
            study_id=study.id,
            session_id=sess.id,
            kind=kind,
            submission_id=submission,
            amount_cents=cents,
            rule=rule[:64],
            state="new",
        )
        for sess, submission, cents in entries
    ]
    db.session.add_all(rows)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise PaymentConflict(
            "another run recorded payments for this study meanwhile; nothing was sent: run it again"
        ) from None
    return rows


@dataclass(frozen=True)
class BonusRule:
    """``per_correct=0.05`` (for each main trial answered right; attention, practice and
    screening trials do not count) or ``flat=0.50``; amounts in the study's currency."""

    kind: str
    cents: int

    @classmethod
    def parse(cls, text: str) -> BonusRule:
        name, _, amount = text.partition("=")
        if name not in ("per_correct", "flat") or not amount:
            raise ValueError(f"a bonus rule is per_correct=AMOUNT or flat=AMOUNT, got {text!r}")
        try:
            value = float(amount)
        except ValueError:
            raise ValueError(f"bonus amount must be a number like 0.05, got {amount!r}") from None
        if not 0 < value <= 100:
            raise ValueError(f"bonus amount must be over 0 and at most 100, got {amount}")
        return cls(name, round(value * 100))

    def __str__(self) -> str:
        return f"{self.kind}={self.cents / 100:.2f}"


def _correct_counts(study: Study) -> dict[int, int]:
    """Main-phase answers marked correct per session, attention checks excluded."""
    key = package_view(study).key
    attention = {t for t, k in key.trials.items() if k.trial_type == "attention"}
    query = (
        select(Response.session_id, func.count())
        .join(Trial, Response.trial_id == Trial.id)
        .where(Trial.study_id == study.id, Trial.phase == "main", Response.correct.is_(True))
        .group_by(Response.session_id)
    )
    if attention:
        query = query.where(Trial.trial_key.not_in(attention))
    rows = db.session.execute(query)
    return {int(s): int(n) for s, n in rows}


def _bonus_csv(entries: list[tuple[StudySession, str, str, int]]) -> str:
    """Prolific's bulk bonus lines, ``participant_id,amount`` in the study's currency."""
    return "\n".join(f"{pid},{cents / 100:.2f}" for _, _, pid, cents in entries)


def pay_bonuses(
    study: Study,
    client: ProlificClient,
    rule: BonusRule,
    rules: ApprovalRules = ApprovalRules(),
    *,
    dry_run: bool = False,
    prolific_study_ids: list[str] | None = None,
) -> PaymentResult:
    """Pay ``rule``'s bonus to every completed session that passes ``rules``, once per
    session whatever the rule (a second run, or a run with another rule, pays nobody
    twice). The dry run computes the same CSV and pays nothing."""
    facts = validity_facts(study)
    records = _records(study, "bonus")
    correct = _correct_counts(study) if rule.kind == "per_correct" else {}
    result = PaymentResult("bonus", dry_run=dry_run)
    due: dict[str, list[tuple[StudySession, str, str, int]]] = {}
    for prolific_id, sub, sess in matched_submissions(
        study, client, paying_study_ids(study, prolific_study_ids)
    ):
        if sess is None:
            continue
        if sess.id in records:  # paid, sent, or set up and paid below
            _sort_out(result, records[sess.id])
            continue
        if _verdict(sess, facts.get(sess.id), rules) is not None or not sub.get("participant_id"):
            continue
        mismatch = _not_its_session(study, prolific_id, sub, sess)
        if mismatch is not None:
            result.warnings.append(f"{sub['id']} not paid a bonus: {mismatch}")
            continue
        cents = rule.cents * (correct.get(sess.id, 0) if rule.kind == "per_correct" else 1)
        if cents > 0:
            due.setdefault(prolific_id, []).append((sess, str(sub["id"]), str(sub["participant_id"]), cents))
    result.csv = "\n".join(_bonus_csv(entries) for entries in due.values())
    result.total_cents = sum(c for rows in due.values() for *_, c in rows)
    result.paid = [f"{sub_id} {c / 100:.2f}" for rows in due.values() for _, sub_id, _, c in rows]
    if dry_run:
        return result
    for prolific_id, entries in due.items():
        rows = _claim(study, "bonus", [(sess, sub_id, c) for sess, sub_id, _, c in entries], str(rule))
        bulk = client.set_up_bonuses(prolific_id, _bonus_csv(entries))
        _mark(rows, "set_up", str(bulk["id"]))
    # Every set-up bulk not yet sent, this run's and any an interrupted run left behind.
    pending: dict[str, list[ProlificPayment]] = {}
    for row in db.session.scalars(
        select(ProlificPayment).where(
            ProlificPayment.study_id == study.id,
            ProlificPayment.kind == "bonus",
            ProlificPayment.state == "set_up",
        )
    ):
        pending.setdefault(str(row.bulk_id), []).append(row)
    for bulk_id, rows in pending.items():
        _mark(rows, "sent")
        try:
            client.pay_bonuses(bulk_id)
        except ProlificError as exc:
            if exc.refused:  # e.g. the balance is short: nothing paid, the next run pays it
                _mark(rows, "set_up")
            raise
        _mark(rows, "paid")
        for row in rows:
            line = f"{row.submission_id} {row.amount_cents / 100:.2f}"
            if line not in result.paid:
                result.paid.append(line)
                result.total_cents += row.amount_cents
    return result
