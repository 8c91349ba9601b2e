"""SSL losses against values computed by hand on 1-3 sample batches."""

import math

import pytest
import torch

from hf_facerec.representation.losses import (dino_loss, ema_update, simsiam_loss, sinkhorn_knopp, swav_loss,
                                              update_center)


def test_sinkhorn_2x2_closed_form():
    # exp([[1,0],[0,1]]) is symmetric, so every normalisation divides equal sums: the codes are rows / (e + 1)
    q = sinkhorn_knopp(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), epsilon=1.0, iterations=1)
    e = math.e
    torch.testing.assert_close(q, torch.tensor([[e, 1], [1, e]]) / (e + 1))


def test_sinkhorn_one_iteration_by_hand():
    # scores (B=2, K=2) = [[ln 3, 0], [0, 0]], eps = 1: exp -> [[3, 1], [1, 1]]; as (K, B): [[3, 1], [1, 1]]
    # rows (prototypes) to 1/2 each: [[3/8, 1/8], [1/4, 1/4]]; columns (samples) to 1/2 each:
    # col0 = 3/8 + 1/4 = 5/8 -> [3/10, 2/10]; col1 = 3/8 -> [1/6, 1/3]; times B = 2, transposed:
    q = sinkhorn_knopp(torch.tensor([[math.log(3), 0.0], [0.0, 0.0]]), epsilon=1.0, iterations=1)
    torch.testing.assert_close(q, torch.tensor([[0.6, 0.4], [1 / 3, 2 / 3]]))


def test_sinkhorn_rows_sum_to_one_and_columns_to_b_over_k():
    scores = torch.tensor([[0.9, 0.1, -0.3], [0.2, 0.8, 0.0], [0.5, 0.4, 0.3], [-0.1, 0.0, 0.7]])
    q = sinkhorn_knopp(scores, epsilon=0.5, iterations=50)
    torch.testing.assert_close(q.sum(1), torch.ones(4))
    torch.testing.assert_close(q.sum(0), torch.full((3,), 4 / 3), atol=1e-4, rtol=0)
    assert (q.argmax(1) == torch.tensor([0, 1, 0, 2])).all()
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_knopp(scores, epsilon=0.0)


def test_swav_loss_one_sample_by_hand():
    # B = 1: Sinkhorn spreads the single sample evenly, q = [1/2, 1/2] for any score; each term is then
    # -(1/2)(log p0 + log p1) of the other crop's softmax(s / T).
    s1, s2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    lp = lambda s: torch.log_softmax(s / 0.5, dim=1)
    expected = -(0.5 * lp(s2).sum() + 0.5 * lp(s1).sum()) / 2
    torch.testing.assert_close(swav_loss([s1, s2], n_global=2, temperature=0.5), expected)
    # by hand for crop 1 predicting from s1 = [1, 0] / 0.5 = [2, 0]: log p = [2 - ln(e^2 + 1), -ln(e^2 + 1)]
    term = -0.5 * (2 - 2 * math.log(math.e ** 2 + 1))
    # 3 crops, 1 global: the global code predicted from crops 2 and 3
    s3 = torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(swav_loss([s2, s3, s1], n_global=1, temperature=0.5),
                               torch.tensor(term, dtype=torch.float32))


def test_dino_loss_by_hand():
    # teacher outputs equal to the centre -> uniform targets; student [[ln 3, 0]] / T=1 -> p = [3/4, 1/4]
    t = [torch.tensor([[0.3, 0.7]]), torch.tensor([[0.3, 0.7]])]
    s = [torch.tensor([[math.log(3), 0.0]]), torch.tensor([[math.log(3), 0.0]])]
    loss = dino_loss(s, t, center=torch.tensor([[0.3, 0.7]]), student_temperature=1.0, teacher_temperature=0.04)
    torch.testing.assert_close(loss, torch.tensor(-0.5 * (math.log(0.75) + math.log(0.25)), dtype=torch.float32))
    # a sharp teacher (centre 0, T -> small): target one-hot on prototype 0 -> -log 3/4
    t = [torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])]
    loss = dino_loss(s, t, center=torch.zeros(1, 2), student_temperature=1.0, teacher_temperature=0.01)
    torch.testing.assert_close(loss, torch.tensor(-math.log(0.75), dtype=torch.float32))


def test_center_and_teacher_ema():
    center = torch.zeros(1, 2)
    update_center(center, [torch.tensor([[1.0, 2.0], [3.0, 4.0]])], momentum=0.9)
    torch.testing.assert_close(center, torch.tensor([[0.2, 0.3]]))
    teacher, student = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    teacher.weight.data.fill_(1.0), student.weight.data.fill_(3.0)
    ema_update(teacher, student, momentum=0.75)
    assert teacher.weight.item() == pytest.approx(1.5)


def test_simsiam_loss_by_hand():
    a, b = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert simsiam_loss(a, a, a, a).item() == pytest.approx(-1.0)
    # cos(a, b) rows: 0 and 1 -> mean 0.5 each way -> -0.5
    assert simsiam_loss(a, b, a, b).item() == pytest.approx(-(0.5 + 0.5) / 2)
    p = torch.tensor([[1.0, 1.0]], requires_grad=True)
    simsiam_loss(p, p.detach(), torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]], requires_grad=True)).backward()
    assert p.grad is not None
