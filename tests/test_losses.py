"""Loss functions against hand-computed values; no model needed."""

import math

import pytest
import torch
import torch.nn.functional as F

from nlp_reuse.losses import (
    TRANSFER_LABEL,
    attention_kl_loss,
    get_hidden_loss,
    get_kd_loss,
    hard_ce_loss,
    hidden_cosine_loss,
    hidden_mse_loss,
    kd_kl_loss,
    kd_loss,
    logit_mse_loss,
)


def test_identical_logits_give_zero_kl():
    logits = torch.randn(4, 5)
    torch.testing.assert_close(kd_kl_loss(logits, logits.clone(), temperature=3.0), torch.zeros(4))


def test_kd_kl_hand_case():
    # Two classes at T=1: p_t = (0.5, 0.5), student logits (0, ln 3) -> p_s = (0.25, 0.75).
    student = torch.tensor([[0.0, math.log(3.0)]])
    teacher = torch.tensor([[1.0, 1.0]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kd_kl_loss(student, teacher, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_kl_equals_torch_kl_div_times_t_squared(temperature):
    torch.manual_seed(0)
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    reference = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1), reduction="none").sum(-1)
    torch.testing.assert_close(kd_kl_loss(s, t, temperature), temperature**2 * reference)


def test_higher_temperature_softens_but_t_squared_keeps_scale():
    torch.manual_seed(1)
    s, t = torch.randn(256, 6), torch.randn(256, 6)
    raw = [F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean").item() for T in (1, 8)]
    scaled = [kd_kl_loss(s, t, T).mean().item() for T in (1, 8)]
    assert raw[1] < raw[0] / 20  # the raw KL collapses as 1/T^2 ...
    assert scaled[1] > scaled[0] / 4  # ... the T^2 factor keeps it the same order of magnitude


def test_alpha_mixes_soft_and_hard_terms():
    torch.manual_seed(2)
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    soft, hard = kd_kl_loss(s, t, 2.0, y), F.cross_entropy(s, y, reduction="none")
    torch.testing.assert_close(kd_loss(s, t, y, temperature=2.0, alpha=0.0), hard)
    torch.testing.assert_close(kd_loss(s, t, y, temperature=2.0, alpha=1.0), soft)
    torch.testing.assert_close(kd_loss(s, t, y, temperature=2.0, alpha=0.3), 0.3 * soft + 0.7 * hard)


def test_ignored_labels_contribute_nothing():
    torch.manual_seed(3)
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    y = torch.tensor([1, -100, 2])
    loss = kd_loss(s, t, y, temperature=2.0, alpha=0.5)
    assert loss[1].item() == 0.0
    assert hard_ce_loss(s, y)[1].item() == 0.0
    assert loss[0].item() > 0 and loss[2].item() > 0


def test_logit_mse_hand_case_and_zero_on_identical_logits():
    student = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, 0.5]])
    teacher = torch.tensor([[3.0, -1.0, 0.0], [0.5, 0.5, 0.5]])
    # Example 0: squared errors (4, 0, 0), mean 4/3; example 1 is identical. No temperature, no softmax.
    torch.testing.assert_close(logit_mse_loss(student, teacher, temperature=5.0), torch.tensor([4.0 / 3.0, 0.0]))
    reference = F.mse_loss(student, teacher, reduction="none").mean(-1)
    torch.testing.assert_close(logit_mse_loss(student, teacher), reference)


def test_logit_mse_sees_what_softmax_hides():
    # Shifting every logit by a constant leaves the softmax (so the KL) unchanged, not the squared error.
    s = torch.tensor([[1.0, 2.0]])
    assert kd_kl_loss(s, s + 10.0, temperature=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert logit_mse_loss(s, s + 10.0).item() == pytest.approx(100.0)


def test_kd_loss_selects_the_soft_loss_and_names_valid_ones():
    torch.manual_seed(4)
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(kd_loss(s, t, y, alpha=0.25, soft_loss="mse"),
                               0.25 * logit_mse_loss(s, t) + 0.75 * F.cross_entropy(s, y, reduction="none"))
    with pytest.raises(ValueError, match=r"Unknown kd_loss 'l1': expected one of \['kl', 'mse'\]"):
        get_kd_loss("l1")


@pytest.mark.parametrize("soft_loss", ["kl", "mse"])
def test_transfer_examples_learn_from_the_teacher_only(soft_loss):
    torch.manual_seed(5)
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    y = torch.tensor([1, TRANSFER_LABEL, -100])
    loss = kd_loss(s, t, y, temperature=2.0, alpha=0.5, soft_loss=soft_loss)
    soft = get_kd_loss(soft_loss)(s, t, 2.0)
    # Gold example: both terms; transfer example: alpha * soft only (no cross-entropy on a guessed label);
    # ignored example: nothing.
    torch.testing.assert_close(loss[0], 0.5 * soft[0] + 0.5 * F.cross_entropy(s[:1], y[:1])[()])
    torch.testing.assert_close(loss[1], 0.5 * soft[1])
    assert loss[2].item() == 0.0
    assert hard_ce_loss(s, y)[1].item() == 0.0


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        kd_kl_loss(torch.zeros(1, 2), torch.zeros(1, 2), temperature=0.0)


def test_hidden_mse_ignores_padding():
    teacher = torch.zeros(2, 3, 4)
    student = torch.zeros(2, 3, 4)
    student[0, 2] = 100.0  # a padded position of example 0
    student[1, 0] = 2.0  # a real position of example 1: squared error 4 on one of its 3 tokens
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(hidden_mse_loss(student, teacher, mask), torch.tensor([0.0, 4.0 / 3.0]))


def test_hidden_cosine_values():
    h = torch.randn(2, 5, 8)
    torch.testing.assert_close(hidden_cosine_loss(h, 3.0 * h), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(hidden_cosine_loss(h, -h), torch.full((2,), 2.0))


def test_attention_kl_zero_on_identical_and_positive_otherwise():
    a = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    b = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    torch.testing.assert_close(attention_kl_loss(a, a.clone()), torch.zeros(2), atol=1e-6, rtol=0)
    assert (attention_kl_loss(a, b) > 0).all()
    # Different head counts are averaged first instead of failing.
    assert attention_kl_loss(a[:, :2], b).shape == (2,)


def test_unknown_hidden_loss_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown hidden_loss 'l3'.*\['cosine', 'mse'\]"):
        get_hidden_loss("l3")
