"""The teacher-free objectives (methods §3.6-3.11): their state, as the official code keeps it,
their wiring into the grid, and the published defaults they carry."""

import copy

import pytest
import torch
import torch.nn.functional as F

from selfdistill import grid as G
from selfdistill import losses
from selfdistill.methods import METHODS, PAPER_METHODS
from selfdistill.models import build_model, dense_logits
from selfdistill.objectives import (
    ClassWiseKD,
    OnlineLabelSmoothing,
    ProgressiveSelfKD,
    ZipfLabelSmoothing,
)

FAMILY = ("tfkd_reg", "tfkd_self", "pskd", "cskd", "zipf", "ols")
K = 10


def test_registry_defaults_are_the_published_cifar100_resnet18_ones():
    """methods §3.6-3.11 (Tf-KD, PS-KD, CS-KD, Zipf, OLS official defaults)."""
    assert METHODS["tfkd_reg"].options() == {"a": 0.99, "temperature": 20.0, "alpha": 0.1,
                                             "multiplier": 100.0, "form": "code"}
    assert METHODS["tfkd_self"].options() == {"alpha": 0.95, "temperature": 6.0,
                                              "multiplier": 50.0}
    assert METHODS["pskd"].options() == {"alpha_T": 0.8}
    assert METHODS["cskd"].options() == {"temperature": 4.0, "lam": 1.0}
    assert METHODS["zipf"].options() == {"lam": 0.1, "power": 1.0}
    assert METHODS["ols"].options() == {"alpha": 0.5}
    assert all(METHODS[m].swept is None for m in FAMILY)


def test_tfkd_self_is_taught_by_the_seeds_ce_run_and_trains_in_its_chain():
    run = G.Run("d", "a", "tfkd_self", G.NO_PARAM, 3, 0)
    assert G.teacher_of(run) == G.Run("d", "a", "ce", G.NO_PARAM, 3, 0)
    assert all(G.teacher_of(G.Run("d", "a", m, G.NO_PARAM, 3, 0)) is None
               for m in FAMILY if m != "tfkd_self")
    exp = {"dataset": "d", "arch": "a", "generations": 1, "methods": (*PAPER_METHODS, *FAMILY),
           "sweeps": {"ls_eps": [0.1], "er_beta": [0.3], "bs_a": [3]}}
    runs = G.experiment_runs(exp, [0])
    names = [r.method for r in runs]
    assert names.index("ce") < names.index("tfkd_self")
    parts = G.bundle_parts(exp, "chain", 0)
    assert {r.method for r in parts["chain"]} == {"ce", "sd", "tfkd_self"}
    assert {r.method for r in parts["baselines"]} == {"ls", "er", "bs", *FAMILY} - {"tfkd_self"}


def test_an_experiment_must_keep_the_papers_five():
    cfg = {"experiments": [{"dataset": "m", "arch": "cnn1d", "methods": ["ce", "sd", "zipf"]}],
           "train": {"epochs": 2, "milestones": [1]}, "resources": {},
           "sweeps": {"ls_eps": [0.1], "er_beta": [0.3], "bs_a": [3]}, "generations": 1,
           "compare": {"ls_eps": 0.1, "er_beta": 0.3, "bs_a": 3, "sd_gen": 1},
           "datasets": {"m": {"source": "mnist1d"}}, "methods": {}}
    with pytest.raises(ValueError, match=r"experiments\[0\]\.methods.*\['ls', 'er', 'bs'\] left"):
        G.validate_config(cfg)
    cfg["experiments"][0]["methods"] = [*PAPER_METHODS, "kd"]
    with pytest.raises(ValueError, match="unknown method.*'kd'"):
        G.validate_config(cfg)


def _student(seed=0):
    torch.manual_seed(seed)
    return build_model("cnn1d", K, (1, 40))


def _data(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 40, generator=g), torch.arange(n) % K


def test_pskd_targets_are_last_epochs_predictions_written_after_each_step():
    model, (x, y) = _student(), _data()
    obj = ProgressiveSelfKD(num_classes=K)
    obj.bind(model, x, y, lambda v: v)
    assert torch.equal(obj.table, F.one_hot(y, K).float())  # epoch 0 trains on the label
    obj.start_epoch(0, 4)
    assert obj.alpha_t == pytest.approx(0.8 / 4)
    idx = torch.tensor([3, 7, 11])
    logits = model(x[idx])
    before = obj.table.clone()
    loss = obj.loss(logits, x[idx], y[idx], idx)
    want = losses.pskd(logits, y[idx], before[idx], 0.2)
    assert torch.equal(loss, want)
    assert torch.allclose(obj.table[idx], torch.softmax(logits.detach(), 1))
    others = torch.ones(len(y), dtype=torch.bool)
    others[idx] = False
    assert torch.equal(obj.table[others], before[others])
    obj.start_epoch(3, 4)
    assert obj.alpha_t == pytest.approx(0.8)
    restored = ProgressiveSelfKD(num_classes=K)
    restored.bind(model, x, y, lambda v: v)
    restored.load_state_dict(copy.deepcopy(obj.state_dict()))
    assert torch.equal(restored.table, obj.table)


def test_ols_matrix_is_the_epochs_mean_of_correct_softmaxes_uniform_when_none():
    obj = OnlineLabelSmoothing(num_classes=3)
    obj.bind(None, torch.zeros(1), torch.zeros(1, dtype=torch.long), lambda v: v)
    logits = torch.tensor([[3.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [0.0, 4.0, 0.0]])
    y = torch.tensor([0, 0, 2, 2])  # the last is wrong (predicts 1): not counted
    assert torch.equal(obj.loss(logits, None, y), 0.5 * F.cross_entropy(logits, y))  # S = 0
    obj.end_epoch()
    p = torch.softmax(logits, 1)
    assert torch.allclose(obj.matrix[0], (p[0] + p[1]) / 2)
    assert torch.allclose(obj.matrix[1], torch.full((3,), 1 / 3))  # no correct example
    assert torch.allclose(obj.matrix[2], p[2])
    assert torch.equal(obj.counts, torch.zeros(3)) and torch.equal(obj.sums, torch.zeros(3, 3))
    assert torch.equal(obj.loss(logits, None, y), losses.ols(logits, y, obj.matrix))


def test_cskd_partners_are_seeded_same_class_draws_with_replacement():
    model, (x, y) = _student(), _data(n=60)
    obj = ClassWiseKD(torch.Generator().manual_seed(5), num_classes=K)
    obj.bind(model, x, y, lambda v: v)
    anchors = torch.arange(60) % K
    picks = torch.stack([obj.partners(anchors) for _ in range(50)])  # [50, 60]
    assert torch.equal(y[picks], anchors.expand(50, -1))  # always the anchor's class
    assert len(set(picks[:, 0].tolist())) > 1  # drawn, not fixed
    assert (picks == torch.arange(60)).any()  # with replacement: the anchor itself can come
    again = ClassWiseKD(torch.Generator().manual_seed(5), num_classes=K)
    again.bind(model, x, y, lambda v: v)
    assert torch.equal(again.partners(anchors), picks[0])  # seeded
    state = copy.deepcopy(obj.state_dict())
    nxt = obj.partners(anchors)
    again.load_state_dict(state)
    assert torch.equal(again.partners(anchors), nxt)  # the sampler resumes


def test_cskd_loss_is_ce_on_anchors_plus_kl_to_a_train_mode_partner_forward():
    model, (x, y) = _student(), _data(n=60)
    obj = ClassWiseKD(torch.Generator().manual_seed(5), num_classes=K)
    obj.bind(model, x, y, lambda v: v)
    ref = copy.deepcopy(model)
    gen = copy.deepcopy(obj.generator)
    model.train()
    xb, yb = x[:16], y[:16]
    logits = model(xb)
    loss = obj.loss(logits, xb, yb)
    probe = ClassWiseKD(gen, num_classes=K)
    probe.bind(ref, x, y, lambda v: v)
    ref.train()
    ref(xb)  # the same BN running-statistics history as the student before the partner pass
    with torch.no_grad():
        partner_logits = ref(x.index_select(0, probe.partners(yb)))
    assert torch.allclose(loss, losses.cskd(logits, yb, partner_logits), atol=1e-6)


def test_zipf_votes_come_from_the_students_own_forward():
    model, (x, y) = _student(), _data()
    obj = ZipfLabelSmoothing()
    obj.bind(model, x, y, lambda v: v)
    model.train()
    logits = obj.student_logits(model, x[:8])
    fmap = model.features(x[:8])
    assert torch.equal(logits, model.head(fmap))
    loss = obj.loss(logits, x[:8], y[:8])
    want = losses.zipf(logits, y[:8], dense_logits(model, fmap.detach()))
    assert torch.allclose(loss, want)
