"""Worked solutions and written answers for the exercises of lesson 00 (reading the claim ledger).

The functions a student writes are checked by ``check_exercise("lesson00.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson00`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

from unet_lessons.exercises.lesson00 import crossed_standard_error, sign_test, verdict_from_interval  # noqa: F401

ANSWERS = {
    "crossed_standard_error": "Each mean square has an expectation made of the variance components: MS_seed of "
                              "σ_e² + N σ_a², MS_item of σ_e² + S σ_b², the residual of σ_e². Their combination "
                              "MS_seed + MS_item − MS_residual has the expectation σ_e² + N σ_a² + S σ_b², and "
                              "divided by S·N that is σ_a²/S + σ_b²/N + σ_e²/(S·N), the variance of the grand "
                              "mean. Keeping it at least MS_residual stops sampling noise from making it "
                              "smaller than the part no design removes.",
    "sign_test": "Under no effect every changed item goes up or down with probability ½, so the number up is "
                 "binomial(n, ½). The two-sided p-value adds both tails at least as extreme as what was seen. "
                 "3 up and 0 down gives p = 2 × (½)³ = 0.25: three items fixed in every seed are a fact about "
                 "those three items, and with a family of six comparisons (α = 0.05/6) the test needs at least "
                 "eight changed items, all in one direction, before it can call the effect reproduced.",
    "verdict": "The direction comes first: above 0 is 'reproduced' and below 0 'contradicted at this budget', even "
               "when the whole interval is also inside the margin (the ledger then notes that the effect is smaller "
               "than the margin). An interval that holds 0 is 'equivalent at this budget' only when both ends lie "
               "strictly inside (−δ, +δ); otherwise it is 'inconclusive at this budget'.",
    "seed_means_only": "Every seed was scored on the same items, so the items' luck is shared by all seed means: "
                       "an easy test set lifts every seed alike and the spread of the seed means does not show it. "
                       "An interval over seed means alone describes these items only; the question a lesson asks "
                       "is about new images from the same source, which needs the item term too.",
    "inconclusive_is_honest": "An inconclusive verdict says that this budget cannot tell the arms apart: the "
                              "interval holds 0 and differences that matter. It is not evidence of no effect; "
                              "that needs the whole interval inside the margin (equivalent). The ledger's note "
                              "says how many seeds or items would settle it if the measured difference were "
                              "the true one.",
}
