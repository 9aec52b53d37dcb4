import math

import pytest
import torch
from torch import nn

from minmaxfuse.layers import GradReverse, grad_reverse
from minmaxfuse.losses import MinMaxObjective


def test_identity_forward_reversed_backward():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = grad_reverse(x, scale=0.3)
    assert torch.equal(y, x) and y.dtype == x.dtype
    w = torch.randn(3, 4, dtype=torch.float64)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * w)
    assert "scale=2.0" in repr(GradReverse(2.0))
    with pytest.raises(ValueError, match="`scale` must be finite and >= 0"):
        grad_reverse(x, scale=-1.0)
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        grad_reverse([1.0])


def _two_modalities(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    xa = torch.randn(n, 4, generator=g) + torch.tensor([2.0, 0.0, 0.0, 0.0])
    xb = torch.randn(n, 4, generator=g) - torch.tensor([2.0, 0.0, 0.0, 0.0])
    x = torch.cat([xa, xb])
    y = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    return x, y


def _train(reverse: bool, steps=150, seed=0):
    torch.manual_seed(seed)
    x, y = _two_modalities(seed=seed)
    enc = nn.Linear(4, 2)
    critic = nn.Linear(2, 2)
    opt = torch.optim.SGD([*enc.parameters(), *critic.parameters()], lr=0.2)
    # the critic's loss enters as a *minimised* term; the reversal makes the encoder maximise it
    obj = MinMaxObjective({"critic": 1.0})
    for _ in range(steps):
        z = enc(x)
        z = grad_reverse(z) if reverse else z
        loss = obj(critic=nn.functional.cross_entropy(critic(z), y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        # a fresh critic trained to convergence on the final features: how separable are they?
        z = enc(x)
    probe = nn.Linear(2, 2)
    popt = torch.optim.LBFGS(probe.parameters(), max_iter=200)

    def closure():
        popt.zero_grad()
        lp = nn.functional.cross_entropy(probe(z), y)
        lp.backward()
        return lp

    popt.step(closure)
    with torch.no_grad():
        return nn.functional.cross_entropy(probe(z), y).item()


def test_one_step_signs():
    """Critic descends its loss, encoder ascends it (a true max player)."""
    torch.manual_seed(1)
    x, y = _two_modalities(64, seed=1)
    enc, critic = nn.Linear(4, 2), nn.Linear(2, 2)
    loss = nn.functional.cross_entropy(critic(grad_reverse(enc(x))), y)
    loss.backward()
    with torch.no_grad():
        # reversed encoder gradient is minus the ordinary one
        enc2, critic2 = nn.Linear(4, 2), nn.Linear(2, 2)
        enc2.load_state_dict(enc.state_dict()), critic2.load_state_dict(critic.state_dict())
    plain = nn.functional.cross_entropy(critic2(enc2(x)), y)
    plain.backward()
    torch.testing.assert_close(enc.weight.grad, -enc2.weight.grad)
    torch.testing.assert_close(critic.weight.grad, critic2.weight.grad)
    lr = 0.05
    with torch.no_grad():
        before = nn.functional.cross_entropy(critic(enc(x)), y).item()
        for p in enc.parameters():  # encoder step only: the critic's loss goes up
            p -= lr * p.grad
        after_enc = nn.functional.cross_entropy(critic(enc(x)), y).item()
        for p in critic.parameters():  # critic step only: its loss goes down
            p -= lr * p.grad
        after_critic = nn.functional.cross_entropy(critic(enc(x)), y).item()
    assert after_enc > before
    assert after_critic < after_enc


def test_adversarial_training_removes_modality_information():
    cooperative = _train(reverse=False)
    adversarial = _train(reverse=True)
    assert cooperative < 0.1  # without reversal the features separate the modalities
    assert adversarial > 0.5 * math.log(2)  # with it the encoder hides the modality
