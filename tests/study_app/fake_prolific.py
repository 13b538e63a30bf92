"""A Flask app that speaks the part of Prolific's API v1 the study app calls (issue 21).

It keeps state the way Prolific does: a created study is UNPUBLISHED until published,
approving moves AWAITING REVIEW to APPROVED (and refuses anything else), a screen-out
needs a custom-screening study and an ACTIVE submission, and paying a bulk bonus is, as
Prolific documents, *not idempotent*: every pay call pays again. So a test that counts
``payouts`` sees exactly what participants would be paid.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flask import Flask, jsonify, request

from tests.study_app.prolific_ids import STUDY, pid_of, submission_of


def _error(status: int, title: str, detail: str) -> Any:
    return jsonify(error={"status": status, "title": title, "detail": detail}), status


class FakeProlific:
    def __init__(self, token: str, study_id: str = STUDY) -> None:
        self.token = token
        self.next_study_id = study_id
        self.studies: dict[str, dict[str, Any]] = {}
        # study id -> submission id -> {"id", "participant_id", "status", "study_id"}
        self.submissions: dict[str, dict[str, dict[str, Any]]] = {}
        self.approved: list[str] = []
        self.requests: list[str] = []  # "METHOD raw-path?query" of every call, as sent
        self.screened_out: list[tuple[str, float]] = []
        self.bulks: dict[str, dict[str, Any]] = {}
        self.payouts: Counter[str] = Counter()  # participant id -> cents paid as bonus
        self.pay_calls = 0
        self.fail_next_pay_after_paying = False  # the money leaves, the answer is a 502
        self.throttle_next_pay = False  # one 429 first (Prolific did nothing)
        self.app = Flask("fake-prolific")
        rules = [
            ("/api/v1/studies/", self.create_study, ["POST"]),
            ("/api/v1/studies/<sid>/transition/", self.transition_study, ["POST"]),
            ("/api/v1/studies/<sid>/submissions/", self.list_submissions, ["GET"]),
            ("/api/v1/studies/<sid>/screen-out-submissions/", self.screen_out, ["POST"]),
            ("/api/v1/submissions/bulk-approve/", self.bulk_approve, ["POST"]),
            ("/api/v1/submissions/bonus-payments/", self.set_up_bonuses, ["POST"]),
            ("/api/v1/bulk-bonus-payments/<bid>/pay/", self.pay, ["POST"]),
        ]
        for path, view, methods in rules:
            self.app.add_url_rule(path, view_func=view, methods=methods)
        self.app.before_request(self._auth)

    def _auth(self) -> Any:
        self.requests.append(f"{request.method} {request.environ.get('RAW_URI') or request.full_path}")
        if request.headers.get("Authorization") != f"Token {self.token}":
            return _error(401, "Unauthorized", "Invalid token.")
        return None

    def add(self, study_id: str, participant: str, status: str, *, submission: str | None = None) -> None:
        """A submission of the participant the tests call ``participant`` (their Prolific
        ids: tests.study_app.prolific_ids), ``submission`` for another SESSION_ID."""
        sub_id = submission or submission_of(participant)
        self.submissions.setdefault(study_id, {})[sub_id] = {
            "id": sub_id,
            "participant_id": pid_of(participant),
            "status": status,
            "study_id": study_id,
        }

    def status(self, submission: str) -> str:
        return next(s[submission]["status"] for s in self.submissions.values() if submission in s)

    # -- endpoints ----------------------------------------------------------------------

    def create_study(self) -> Any:
        body = request.get_json()
        for required in ("name", "description", "external_study_url", "reward", "total_available_places"):
            if not body.get(required):
                return _error(400, "Bad request", f"{required}: this field is required.")
        sid = self.next_study_id
        self.studies[sid] = {**body, "id": sid, "status": "UNPUBLISHED"}
        return jsonify(self.studies[sid]), 201

    def transition_study(self, sid: str) -> Any:
        if sid not in self.studies:
            return _error(404, "Not found", "No such study.")
        if request.get_json().get("action") == "PUBLISH":
            self.studies[sid]["status"] = "ACTIVE"
        return jsonify(self.studies[sid])

    def list_submissions(self, sid: str) -> Any:
        if sid not in self.studies and sid not in self.submissions:  # not this researcher's
            return _error(404, "Not found", "No such study.")
        rows = list(self.submissions.get(sid, {}).values())
        limit, offset = int(request.args["limit"]), int(request.args["offset"])
        return jsonify(results=rows[offset : offset + limit], meta={"count": len(rows)})

    def bulk_approve(self) -> Any:
        body = request.get_json()
        subs = self.submissions.get(body["study_id"], {})
        for sub_id in body["submission_ids"]:
            if sub_id not in subs or subs[sub_id]["status"] != "AWAITING REVIEW":
                return _error(400, "Bad request", f"{sub_id} is not awaiting review.")
        for sub_id in body["submission_ids"]:
            subs[sub_id]["status"] = "APPROVED"
            self.approved.append(sub_id)
        return jsonify(message="The request to bulk approve has been made successfully.")

    def screen_out(self, sid: str) -> Any:
        if not self.studies.get(sid, {}).get("is_custom_screening"):
            return _error(400, "Bad request", "This study is not a custom screening study.")
        body = request.get_json()
        subs = self.submissions.get(sid, {})
        for sub_id in body["submission_ids"]:
            if subs.get(sub_id, {}).get("status") != "ACTIVE":
                return _error(400, "Bad request", f"{sub_id} is not active.")
        for sub_id in body["submission_ids"]:
            subs[sub_id]["status"] = "SCREENED OUT"
            self.screened_out.append((sub_id, body["bonus_per_submission"]))
        return jsonify(message="The request to bulk screen out has been made successfully.")

    def set_up_bonuses(self) -> Any:
        body = request.get_json()
        lines = [line.split(",") for line in body["csv_bonuses"].splitlines() if line]
        bid = f"bulk{len(self.bulks) + 1}"
        self.bulks[bid] = {
            "study_id": body["study_id"],
            "lines": [(p, round(float(a) * 100)) for p, a in lines],
        }
        total = sum(c for _, c in self.bulks[bid]["lines"])
        return jsonify(id=bid, study=body["study_id"], amount=total, fees=0, total_amount=total), 201

    def pay(self, bid: str) -> Any:
        self.pay_calls += 1
        if self.throttle_next_pay:
            self.throttle_next_pay = False
            return jsonify(detail="Request was throttled."), 429, {"Retry-After": "0"}
        if bid not in self.bulks:
            return _error(404, "Not found", "No such bulk bonus payment.")
        for participant, cents in self.bulks[bid]["lines"]:  # again on every call, as Prolific does
            self.payouts[participant] += cents
        if self.fail_next_pay_after_paying:
            self.fail_next_pay_after_paying = False
            return jsonify(detail="Bad gateway"), 502
        return jsonify(message="The bonuses will be paid asynchronously."), 202
