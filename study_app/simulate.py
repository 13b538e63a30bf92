"""Bot participants: drive a running study over HTTP exactly as the browser does.

Each bot enters with its own Prolific-style id, consents, sets the volume, takes
the headphone check, answers every trial (fetching each of its clips whole first, as
a browser's player does; correct with a given probability per trial type, with
plausible reaction times and play counts), fills the
questionnaire and finishes. With ``chaos`` bots also reload pages, repeat
submits, drop connections after sending and retry, which is what real networks
and impatient people do. Used by tests (realistic data for analysis), by the
benchmarks (load) and by researchers (a pilot before launch).

The bots need the study's key to know the right answers, so ``simulate`` runs
with the app's database configured (the same DATABASE_URL as the server); that
is also how it counts what was stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from artifact_schemas import AnswerKey, StudyManifest
from study_app.bot_config import BotConfig
from study_app.models import BOT_AGENT

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_token(html: str) -> str | None:
    """The CSRF token every app page carries in ``<meta name="csrf-token">`` (None if absent).

    Bots, the tests and the benchmarks post forms the way a browser does, with this token.
    """
    match = _CSRF.search(html)
    return match.group(1) if match else None


# Attentive people pass catch trials; only --accuracy and --steer-accuracy model uncertainty.
ATTENTION_ACCURACY = 0.95
# The STUDY_ID bots arrive with: Prolific's id format (24 hex digits, checked at entry), and
# no study of anyone's on Prolific (--sync passes over a STUDY_ID Prolific does not know).
SIMULATED_STUDY_ID = "5e1f" + "0" * 20


# A refused (425) answer is sent again, at growing pauses, until this long after the trial's
# audio could have been played through since it was served; still refused then, the bot
# gives up: the server will not take it (it never heard the clips).
RETRY_AFTER_AUDIO_S = 2.0


# A slider condition's planted mean when BotConfig.slider_means names none, by clip role:
# the hidden reference near the top (as BS.1534's post-screening expects of a listener),
# a low-pass anchor low, a condition under test in between.
SLIDER_MEANS = {"reference": 98.0, "anchor": 25.0, "condition": 60.0}
# Sd of a bot's offset from the planted means, and of one rating around that, on 0-100.
# The hidden reference gets neither: a listener knows it from the open reference and puts
# it near the top whatever their leniency, with a little noise (post-screening keeps them).
SLIDER_BOT_SD = 5.0
SLIDER_NOISE_SD = 8.0
SLIDER_REFERENCE_SD = 2.0


@dataclass
class BotResult:
    pid: str
    session_id: str = ""  # Prolific's SESSION_ID (the submission's id) the bot arrives with
    status: str = "started"
    sent: set[str] = field(default_factory=set)  # idempotency keys submitted
    acked: set[str] = field(default_factory=set)  # keys the server answered 200 for
    duplicates_sent: int = 0
    dropped: int = 0
    reloads: int = 0


class Bot:
    def __init__(
        self, base_url: str, slug: str, manifest: StudyManifest, key: AnswerKey, cfg: BotConfig, index: int
    ) -> None:
        self.slug, self.manifest, self.key, self.cfg = slug, manifest, key, cfg
        self.rng = random.Random(f"{cfg.seed}:{index}")
        self.base_url = base_url
        # Prolific-format ids (24 hex digits), the same for the same seed and index.
        tag = f"sim{cfg.seed}x{index}x{self.rng.randrange(10**8):08d}"
        self.result = BotResult(
            pid=hashlib.sha256(f"pid:{tag}".encode()).hexdigest()[:24],
            session_id=hashlib.sha256(f"session:{tag}".encode()).hexdigest()[:24],
        )
        self.fails_screening = self.rng.random() < cfg.fail_screening
        self.slider_offset = self.rng.gauss(0, SLIDER_BOT_SD)
        self.client = httpx.Client(base_url=base_url, timeout=30, headers={"User-Agent": f"{BOT_AGENT}/1"})
        self.token = ""

    # ------------------------------------------------------------------ HTTP with retries
    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(12):
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500 and response.status_code != 429:
                return response
            time.sleep(min(5.0, 0.1 * 2**attempt))
        raise RuntimeError(f"{method} {url}: no answer after 12 attempts")

    def _page(self, path: str) -> httpx.Response:
        page = self._request("GET", path)
        token = csrf_token(page.text)
        if token:
            self.token = token
        return page

    # ------------------------------------------------------------------ the session
    def run(self) -> BotResult:
        try:
            self._run()
        finally:
            self.client.close()
        return self.result

    def _run(self) -> None:
        r = self.result
        ids = {"PROLIFIC_PID": r.pid, "STUDY_ID": SIMULATED_STUDY_ID, "SESSION_ID": r.session_id}
        self._page(f"/s/{self.slug}?" + "&".join(f"{k}={v}" for k, v in ids.items()))
        form = {
            "csrf_token": self.token,
            "choice": "accept",
            **ids,
            "screen": "1920x1080",
        }
        entered = self._request("POST", f"/s/{self.slug}/consent", data=form)
        if entered.status_code != 302:
            r.status = "full" if entered.status_code == 503 else f"refused {entered.status_code}"
            return
        for _ in range(10_000):
            if self.cfg.chaos and self.rng.random() < 0.05:
                r.reloads += 1
                self._page(f"/s/{self.slug}/go")
            data = self._request("GET", f"/api/s/{self.slug}/trial").json()
            stage = data.get("stage")
            if "trial" in data:
                if not self._answer(data["trial"]):
                    r.status = "refused 425"  # never heard: no completion code
                    return
            elif stage in ("volume", "instructions"):
                self._page(f"/s/{self.slug}/go")
                self._request("POST", f"/s/{self.slug}/{stage}", data={"csrf_token": self.token})
            elif stage == "questionnaire":
                self._page(f"/s/{self.slug}/go")
                self._request("POST", f"/s/{self.slug}/questionnaire", data=self._questionnaire())
            else:
                page = self._page(f"/s/{self.slug}/go")
                end = re.search(r'id="end" data-status="([a-z_]+)"', page.text)
                status = end.group(1) if end else ""
                r.status = status if status in ("completed", "screened_out") else "ended"
                return
        r.status = "stuck"

    def _questionnaire(self) -> dict[str, str]:
        form = {"csrf_token": self.token}
        for q in self.manifest.questionnaire:
            form[q.id] = {"choice": q.choices[0] if q.choices else "", "number": "30"}.get(
                q.type, "simulated"
            )
        return form

    def _choose(self, trial: dict[str, Any]) -> dict[str, Any]:
        tk = self.key.trials[trial["id"]]
        kind = tk.trial_type
        if kind == "screening":
            p = 0.0 if self.fails_screening else 1.0
        elif kind == "attention":
            p = ATTENTION_ACCURACY
        elif kind == "steering":
            p = self.cfg.steer_accuracy if self.cfg.steer_accuracy is not None else self.cfg.accuracy
        else:
            p = self.cfg.accuracy
        right = self.rng.random() < p
        body: dict[str, Any] = {}
        if trial["options"]:
            ids = [o["id"] for o in trial["options"]]
            wrong = [i for i in ids if i != tk.correct_option]
            if tk.correct_option and (right or not wrong):
                body["answer"] = tk.correct_option
            else:
                body["answer"] = self.rng.choice(wrong if tk.correct_option else ids)
        if trial["rating"]:
            lo, hi = trial["rating"]["min"], trial["rating"]["max"]
            mid = (lo + hi) / 2
            # "Right" raters agree with the label: upper half of the scale.
            upper = [v for v in range(lo, hi + 1) if v > mid]
            lower = [v for v in range(lo, hi + 1) if v < mid]
            body["rating"] = self.rng.choice(upper if right else lower)
        if trial["confidence"]:
            body["confidence"] = self.rng.randint(trial["confidence"]["min"], trial["confidence"]["max"])
        if trial.get("sliders"):
            scale = trial["sliders"]
            body["sliders"] = {c["id"]: self._slide(c["id"], scale) for c in trial["candidates"]}
        return body

    def _slide(self, clip: str, scale: dict[str, Any]) -> int:
        """A slider value: the clip's condition's planted mean (0-100, mapped onto the
        trial's scale), plus this bot's offset and the rating's noise, on the scale."""
        ck = self.key.clips[clip]
        mean = self.cfg.slider_means.get(ck.condition or "", SLIDER_MEANS.get(ck.role, 50.0))
        lo, hi = scale["min"], scale["max"]
        if ck.role == "reference":
            value = mean + self.rng.gauss(0, SLIDER_REFERENCE_SD)
        else:
            value = mean + self.slider_offset + self.rng.gauss(0, SLIDER_NOISE_SD)
        return round(min(hi, max(lo, lo + (hi - lo) * value / 100)))

    def _listen(self, trial: dict[str, Any]) -> float:
        """Fetch the trial's clips as ``cfg.listen`` says; return how long its audio lasts."""
        clips = {c["id"]: c["url"] for c in (*trial["references"], *trial["candidates"])}
        for url in clips.values():
            if self.cfg.listen == "full":
                self._request("GET", url)
            elif self.cfg.listen == "first_byte":
                self._request("GET", url, headers={"Range": "bytes=0-0"})
        return sum(self.manifest.clips[c].duration_s for c in clips)

    def _answer(self, trial: dict[str, Any]) -> bool:
        """Answer ``trial``; False when the server keeps refusing (425) after the audio's time."""
        r = self.result
        served = time.monotonic()
        audio_s = self._listen(trial)
        clips = [c["id"] for c in (*trial["references"], *trial["candidates"])]
        # Reaction time: log-normal around 2.5 s, as in online listening tests.
        rt_ms = 1000 * math.exp(self.rng.gauss(math.log(2.5), 0.5))
        if self.cfg.pace:
            time.sleep(rt_ms / 1000 * self.cfg.pace)
        body = {
            "idempotency_key": uuid.UUID(int=self.rng.getrandbits(128)).hex,
            "trial_id": trial["id"],
            "rt_ms": round(rt_ms, 1),
            "plays": {c: 1 + (self.rng.random() < 0.15) for c in clips},
            "client_ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self._choose(trial),
        }
        r.sent.add(body["idempotency_key"])
        headers = {"X-CSRFToken": self.token}
        url = f"/api/s/{self.slug}/answer"
        if self.cfg.chaos and self.rng.random() < 0.1:
            # Send, then hang up before the reply: the server may or may not have stored it.
            r.dropped += 1
            with contextlib.suppress(httpx.TransportError):
                self.client.post(url, json=body, headers=headers, timeout=httpx.Timeout(5.0, read=0.001))
        response = self._request("POST", url, json=body, headers=headers)
        # The server's listening check names no time to wait: try again, for as long as the
        # audio lasts since the trial was served (what a listener takes) and a little more.
        deadline, pause = served + audio_s + RETRY_AFTER_AUDIO_S, 0.1
        while response.status_code == 425:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(2 * pause, 2.0)
            response = self._request("POST", url, json=body, headers=headers)
        if response.status_code == 200:
            r.acked.add(body["idempotency_key"])
            if self.cfg.chaos and self.rng.random() < 0.1:
                r.duplicates_sent += 1  # a double click: must come back as the same answer
                again = self._request("POST", url, json=body, headers=headers)
                if again.status_code != 200 or not again.json().get("duplicate"):
                    raise RuntimeError(
                        f"duplicate submit was not recognised: {again.status_code} {again.text}"
                    )
        elif response.status_code == 400 and "CSRF" in response.text:
            self._page(f"/s/{self.slug}/go")
        return True


def run_bots(
    base_url: str,
    slug: str,
    manifest: StudyManifest,
    key: AnswerKey,
    cfg: BotConfig,
    progress: Callable[[BotResult], None] | None = None,
) -> list[BotResult]:
    """Run ``cfg.participants`` bots, ``cfg.concurrency`` at a time."""

    def one(i: int) -> BotResult:
        result = Bot(base_url, slug, manifest, key, cfg, i).run()
        if progress:
            progress(result)
        return result

    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
        return list(pool.map(one, range(cfg.participants)))
