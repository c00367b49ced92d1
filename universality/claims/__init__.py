"""The paper's claims as verdicts: the statistics (:mod:`.verdicts`) and the rules that turn a
run's distances and scaffolds into claim rows (:mod:`.rules`)."""

from __future__ import annotations

from .rules import STATEMENTS as STATEMENTS
from .rules import TASK_CLAIMS as TASK_CLAIMS
from .rules import THRESHOLDS as THRESHOLDS
from .rules import criteria_rates as criteria_rates
from .rules import error_matched as error_matched
from .rules import scaffold_claims as scaffold_claims
from .rules import separability_claims as separability_claims
from .verdicts import Claim as Claim
from .verdicts import Verdict as Verdict
