"""What a plugin may call on SemiSupervisedStrategy: an extra input in the
main forward, a second pass with gradients, ``second_pass`` against
``forward_parts`` + ``ssl_loss``."""

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch.utils.data import TensorDataset

from tests.support.nets import three_block_cnn


class AddMixedInputs(SupervisedPlugin):
    """Extension point 1: extra samples in the main forward, loss in before_backward."""

    def __init__(self):
        super().__init__()
        self.extra_shapes = []

    def before_forward(self, strategy, **kwargs):
        n = strategy.mb_x.shape[0]
        mixed = 0.5 * strategy.mb_x + 0.5 * strategy.mb_ulb_weak[:n]
        strategy.add_forward_input("mix", mixed)

    def before_backward(self, strategy, **kwargs):
        out = strategy.mb_extra_output["mix"]
        self.extra_shapes.append(tuple(out.shape))
        strategy.loss = strategy.loss + F.cross_entropy(out, strategy.mb_y)


class SecondPass(SupervisedPlugin):
    """Extension point 2: a second forward with gradients and the base loss again."""

    def __init__(self):
        super().__init__()
        self.records = []

    def before_backward(self, strategy, **kwargs):
        main = (strategy.sup_loss + strategy.lambda_u * strategy.unsup_loss).item()
        stats = {k: v.clone() for k, v in strategy.pseudo_labeler.state_dict().items()}
        z_lb, z_weak, z_strong = strategy.forward_parts(
            strategy.mb_x, strategy.mb_ulb_weak, strategy.mb_ulb_strong
        )
        out = strategy.ssl_loss(
            z_lb, strategy.mb_y, z_weak, z_strong, strategy.mb_ulb_index, update=False
        )
        unchanged = all(
            torch.equal(v, strategy.pseudo_labeler.state_dict()[k])
            for k, v in stats.items()
        )
        strategy.loss = strategy.loss + out.loss
        self.records.append((main, out.loss.item(), strategy.loss.item(), unchanged))


class NamedSecondPass(SupervisedPlugin):
    """Extension point 3: ``second_pass`` with an extra input, against its two
    halves (``forward_parts`` of the same layout, then ``ssl_loss``)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def before_backward(self, strategy, **kwargs):
        n = strategy.mb_x.shape[0]
        mixed = 0.5 * strategy.mb_x + 0.5 * strategy.mb_ulb_weak[:n]
        out = strategy.second_pass({"mix": mixed}, update_statistics=False)
        z_lb, z_mix, z_weak, z_strong = strategy.forward_parts(
            strategy.mb_x, mixed, strategy.mb_ulb_weak, strategy.mb_ulb_strong
        )
        halves = strategy.ssl_loss(
            z_lb, strategy.mb_y, z_weak, z_strong, strategy.mb_ulb_index, update=False
        )
        base = strategy.sup_loss + strategy.lambda_u * strategy.unsup_loss
        self.records.append(
            (
                torch.allclose(out.outputs["mix"], z_mix, atol=1e-6),
                torch.allclose(out.base.loss, halves.loss, atol=1e-6),
                torch.equal(strategy.base_loss, base),
                strategy.second_pass({"mix": mixed}, base_loss=False).base,
            )
        )


def count_forwards(model):
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls


def test_extension_points_main_forward_and_second_pass(
    digits, labeled_stream, make_strategy
):
    torch.manual_seed(0)
    model = three_block_cnn()
    calls = count_forwards(model)
    mix = AddMixedInputs()
    strategy = make_strategy(
        model, TensorDataset(digits["x_ulb"]), [mix], train_iterations=2
    )
    strategy.train(labeled_stream().train_stream[0])
    assert calls == [8 + 16 + 16 + 8] * 2  # one joint forward including the extra batch
    assert mix.extra_shapes == [(8, 10)] * 2

    torch.manual_seed(0)
    model = three_block_cnn()
    calls = count_forwards(model)
    second = SecondPass()
    strategy = make_strategy(
        model, TensorDataset(digits["x_ulb"]), [second], algorithm="softmatch",
        train_iterations=2,
    )  # fmt: skip
    strategy.train(labeled_stream().train_stream[0])
    assert calls == [40, 40, 40, 40]  # main forward + second pass each iteration
    for main, again, total, unchanged in second.records:
        # same model, same batch: the second pass recomputes the same base loss
        # (without moving the SoftMatch statistics), and the objective is L1 + L2
        assert again == pytest.approx(main, rel=1e-4)
        assert total == pytest.approx(main + again, rel=1e-5)
        assert unchanged

    named = NamedSecondPass()
    strategy = make_strategy(
        three_block_cnn(), TensorDataset(digits["x_ulb"]), [named], algorithm="softmatch",
        train_iterations=2,
    )  # fmt: skip
    strategy.train(labeled_stream().train_stream[0])
    assert named.records == [(True, True, True, None)] * 2
