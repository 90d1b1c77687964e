"""Worked solutions and written answers for the exercises of lesson 07 (autoencoder regularisation).

The functions a student writes are checked by ``check_exercise("lesson07.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson07`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

from unet_lessons.exercises.lesson07 import dense_inputs, kl_divergence, vae_loss  # noqa: F401

ANSWERS = {
    "kl_divergence": "½ Σ_j (μ_j² + σ_j² − log σ_j² − 1), summed over the latent dimensions, one value per sample. "
                     "Each term is at least 0 and is 0 only at μ = 0, σ = 1: the penalty pulls every code towards "
                     "the standard normal, so that nearby codes decode to similar images and a code drawn from "
                     "N(0, 1) decodes to something image-like.",
    "vae_loss": "0.1 × the mean squared error plus 0.1 × (1/N) Σ(μ² + σ² − log σ² − 1). The paper's KL has no ½ "
                "(it is twice the textbook divergence) and is divided by N, the number of voxels (3.9 million at "
                "160×192×128), so at the paper's size it weighs very little against the reconstruction; at our "
                "32³ patches N is 32,768 and it weighs 120 times more.",
    "dense_inputs": "The dense layer's input is the flattened VD map: 16 channels × (s / 2**depth / 2) per axis = "
                    "16 × 10 × 12 × 8 = 15,360 values at the paper's crop, 16 × 2 × 2 × 2 = 128 at our 32³. A dense "
                    "layer has one weight per input value, so another input size means another number of weights: "
                    "that is why the VAE branch fixes the training patch size, and why the convolutional "
                    "segmentation path does not.",
    "why_vae_helps": "The paper's reason is limited data: the encoder is shared, and the reconstruction asks it to "
                     "keep enough about the whole image to redraw it, not only what separates the labels of a few "
                     "training volumes. At our budget section 8 cannot say: over five seeds the branch changes the "
                     "held-out Dice by less than 0.01, with seeds on both sides, and the positive control, four times "
                     "the data, is inconclusive too, so the test cannot see effects of a few hundredths. To test it "
                     "more strongly: more held-out volumes first (at 12, no number of seeds settles even the control), "
                     "then more seeds; train long enough that the branch reconstructs and the 4-volume arms overfit "
                     "(the regime the paper's motivation is about); and report the training-minus-held-out gap and "
                     "the seed spread beside the Dice.",
}
