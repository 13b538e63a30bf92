"""Mixed models through R's lme4 (``glmer`` Laplace, ``lmer`` REML), over files.

The model analysts publish is lme4's; Python has no maintained equivalent (statsmodels'
mixed GLM is variational Bayes only, and its crossed linear mixed model builds one
group of every row: minutes on 50k ratings where lmer's sparse fit takes seconds). So
when ``Rscript`` and lme4 are installed (Debian: ``r-cran-lme4``), the rows go to R as
CSV, ``glmer`` or ``lmer`` fits them, and the coefficients come back as CSV: no
Python-R bridge to install (rpy2 and pymer4 need R's headers and a matching build), and
the same R function is what ``analysis.R`` in a report reruns. Without R,
:func:`fit_lme4` returns None and the caller falls back, saying so.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import patsy

# The fit, shared by the bridge below and a report's analysis.R (what a reviewer reruns
# is what produced the table). Wald CIs come from the standard errors, as summary()
# reports them, with t quantiles: lme4 gives no degrees of freedom (they are contested for
# crossed designs), and its z intervals covered only 0.80-0.93 of simulated studies of 12
# features, so a term constant within the levels of a grouping factor (the intercept,
# layer, strength: feature-level) gets that factor's levels minus the fixed-effect columns
# constant within it (SAS's DDFM=BETWITHIN, bw_df; analysis.models.between_within_df is
# the same in Python) and p = 2 * pt(-|t|, df); other terms df = Inf, the normal z.
# A binary design's rows carry an "offset" column, logit(chance): the intercept is then
# the log-odds against chance and its p tests "at chance", not "at 50 %".
R_FIT = r"""
suppressPackageStartupMessages(library(lme4))
fit_model <- function(d, formula, family) {
  for (col in intersect(c("participant", "feature", "labeler", "layer"), names(d))) {
    d[[col]] <- factor(d[[col]])
  }
  if ("offset" %in% names(d)) formula <- update(formula, . ~ . + offset(offset))
  if (family == "gaussian") {
    lmer(formula, data = d, REML = TRUE, control = lmerControl(optimizer = "bobyqa"))
  } else {
    glmer(formula, data = d, family = binomial, control = glmerControl(optimizer = "bobyqa"), nAGQ = 1)
  }
}
bw_df <- function(fit) {
  X <- getME(fit, "X")
  df <- rep(Inf, ncol(X))
  for (f in getME(fit, "flist")) {
    const <- apply(X, 2, function(col) all(tapply(col, f, function(v) diff(range(v))) < 1e-12))
    df[const] <- pmin(df[const], max(nlevels(f) - sum(const), 1))
  }
  df
}
coef_table <- function(fit) {
  s <- coef(summary(fit))
  df <- bw_df(fit)
  data.frame(term = rownames(s), coef = s[, 1], se = s[, 2], t = s[, 3], df = df,
             p = 2 * pt(-abs(s[, 3]), df),
             ci_low = s[, 1] - qt(0.975, df) * s[, 2], ci_high = s[, 1] + qt(0.975, df) * s[, 2],
             message = paste(fit@optinfo$conv$lme4$messages, collapse = "; "))
}
"""

LME4_SCRIPT = (
    R_FIT
    + r"""
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
write.csv(coef_table(fit_model(d, as.formula(args[2]), args[4])), args[3], row.names = FALSE)
"""
)


@functools.cache
def rscript() -> str | None:
    """The Rscript executable when R with lme4 is installed, else None (probed once)."""
    exe = shutil.which("Rscript")
    if exe is None:
        return None
    probe = subprocess.run(
        [exe, "-e", "quit(status = !requireNamespace('lme4', quietly = TRUE))"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    return exe if probe.returncode == 0 else None


def r_formula(formula: str) -> str:
    """The patsy formula (``y ~ C(a) + b``) as R's fixed part: the scripts make a a factor."""
    return formula.replace("C(", "").replace(")", "")


def fit_lme4(
    rows: pd.DataFrame,
    formula: str,
    family: str = "binomial",
    timeout: float = 600,
    offset: float | None = None,
) -> pd.DataFrame | None:
    """``glmer(formula + (1|participant) + (1|feature), binomial)``; None without R.

    ``family="gaussian"`` fits ``lmer`` (REML) instead, for ratings. ``offset`` (a
    constant, e.g. logit(chance)) enters as ``offset(offset)``: the intercept is then
    measured from it.

    ``formula`` is the patsy form used elsewhere; factors are the columns wrapped in C().
    Returns one row per fixed effect, in the design's (patsy's) order and names: term, coef,
    se, t, df (between-within; inf where the normal z applies), p, ci_low, ci_high, and
    ``message`` (lme4's convergence or singular-fit messages, "" when none).
    """
    exe = rscript()
    if exe is None:
        return None
    fixed = r_formula(formula)
    columns = ["participant", "feature", *{c.strip() for c in fixed.replace("~", "+").split("+")}]
    if offset is not None:
        rows, columns = rows.assign(offset=offset), [*columns, "offset"]
    with tempfile.TemporaryDirectory(prefix="glmer-") as tmp:
        data, script, out = Path(tmp) / "rows.csv", Path(tmp) / "glmer.R", Path(tmp) / "coef.csv"
        rows[[c for c in dict.fromkeys(columns) if c in rows.columns]].to_csv(data, index=False)
        script.write_text(LME4_SCRIPT)
        full = f"{fixed} + (1 | participant) + (1 | feature)"
        done = subprocess.run(
            [exe, str(script), str(data), full, str(out), family],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            raise RuntimeError(f"{'lmer' if family == 'gaussian' else 'glmer'} failed: {last}")
        coefs = pd.read_csv(out, keep_default_na=False)
    return _patsy_order(coefs, rows, formula)


def _r_name(patsy_name: str) -> str:
    """lme4's name of a patsy column: Intercept, C(layer)[T.6.0] -> layer6, x -> x."""
    if patsy_name == "Intercept":
        return "(Intercept)"
    factor = re.fullmatch(r"C\((\w+)\)\[T\.(.+)\]", patsy_name)
    if factor is None:
        return patsy_name
    level = factor.group(2)
    with contextlib.suppress(ValueError):
        if float(level).is_integer():  # read.csv turns 6.0 into 6, and factor() into "6"
            level = str(int(float(level)))
    return factor.group(1) + level


def _patsy_order(coefs: pd.DataFrame, rows: pd.DataFrame, formula: str) -> pd.DataFrame:
    # patsy puts factor terms before numeric ones; R keeps the formula's order.
    names = patsy.dmatrix(formula.split("~", 1)[1], rows).design_info.column_names
    by_r = coefs.set_index("term")
    missing = [n for n in names if _r_name(n) not in by_r.index]
    if missing or len(names) != len(coefs):
        raise RuntimeError(f"lme4's terms {list(coefs['term'])} do not match the design's {names}")
    return by_r.loc[[_r_name(n) for n in names]].reset_index(drop=True).assign(term=names)
