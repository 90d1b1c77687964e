"""Worked solutions and written answers for the exercises of lesson 09 (3D U²-Net).

The functions a student writes are checked by ``check_exercise("lesson09.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson09`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

from unet_lessons.exercises.lesson09 import adapter_unit, full_kernel, separable_parameters  # noqa: F401

ANSWERS = {
    "separable_parameters": "A full convolution has c_out filters, each with k^d entries for every one of the c_in "
                            "input channels, and a bias each: k^d·c_in·c_out + c_out. The depthwise step has c_in "
                            "filters of k^d entries that each read one channel, and c_in biases: k^d·c_in + c_in; the "
                            "pointwise step is a full 1×1(×1) convolution: c_in·c_out + c_out. For 3×3×3 kernels and "
                            "64 channels in and out that is 110,656 against 5,952: 5.4 %. The saving grows with the "
                            "channels, since the full count grows as 27·c_in·c_out and the separable one as "
                            "c_in·(28 + c_out) + c_out; for many channels the share tends to 1/27 + 1/c_out. With a "
                            "single output channel the separable version is the larger (29·c_in + 1 against "
                            "27·c_in + 1): there is no mixing to save on.",
    "full_kernel": "One output of the two steps is y_o = Σ_i P[o, i] · (D[i] ⋆ x_i) = Σ_i (P[o, i] · D[i]) ⋆ x_i, so the "
                   "full convolution's weight is W[o, i] = P[o, i] · D[i]: the pointwise weight (C_out, C_in) broadcast "
                   "over the depthwise kernels (C_in, k, ...). Every kernel that reads input channel i is a multiple "
                   "of the same D[i]; a full convolution could learn a different kernel for every pair (o, i). That "
                   "rank-one constraint is what the parameter saving costs.",
    "adapter_unit": "outer_norm(pointwise(leaky_relu(inner_norm(depthwise(x)), 0.01))): the authors' conv_unit "
                    "runs the domain's dwise module (the depthwise convolution, then norm_act: instance norm and "
                    "LeakyReLU), then the shared pwise convolution, then the domain's own norm (self.op[task_idx]); "
                    "the activation after that belongs to the block that calls the unit. Because a norm and an "
                    "activation sit between the two convolutions, the unit is not a convolution any more, which is "
                    "why the identity of exercise 2 holds for the bare separable convolution only.",
    "why_adaptation_lost": "The adapted network keeps every shared weight of the universal network frozen and "
                           "trains only the new domain's parts (its input and output layers, deep-supervision "
                           "heads, depthwise adapters and norms: about a tenth of the parameters). That can only "
                           "work as well as the shared pointwise kernels are good features for the new domain. "
                           "Here they were learnt in 240 steps on three domains, by a network that itself scored "
                           "below the independent ones, so they are a weak starting point; the new independent "
                           "network trains all of its (more) weights on the new domain in the same 80 steps. The "
                           "authors adapt a universal model trained for hundreds of epochs, and their adaptation "
                           "freezes even less: only the blocks' pointwise weights, with the strided convolutions "
                           "trained afresh (train_model_wt_adapters.py:106-146). A fairer test of their claim needs "
                           "a universal model trained to convergence; at this budget the verdict is about this "
                           "budget.",
    "one_percent": "The universal model of the authors' training script has 6,577,460 parameters and the five "
                   "independent models 134,508,692: 4.9 %, not about 1 %. Its domain-specific parts are 723,620 "
                   "(0.54 %), and 80 % of its shared parameters are the full 3×3×3 strided convolutions that every "
                   "domain shares (4,714,976 of 5,853,840). No count of what the code builds gives 1 %: the "
                   "figure may count another configuration (other widths, or downsampling by separable "
                   "convolutions), or another ratio; the paper's table, which would say, was not available to "
                   "us, so the lesson reports what it could check and says so.",
}
