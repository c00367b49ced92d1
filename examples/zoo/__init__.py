"""A zoo of recurrent cells in use today, each written as a user would write it (the
``ModuleCell`` protocol of ``universality.cells.module``), one file per cell.

``ZOO`` maps a short name to the ``MODULE:ATTR`` spec that ``universality check`` takes, e.g.::

    universality check examples.zoo.minlstm:MinLSTM --out runs/check-minlstm

(run from the repository root, which makes ``examples`` importable).

Input-gated linear recurrences (``h' = a(x) * h + b(x)``): minLSTM, a Mamba-style selective
SSM, an LRU-style complex diagonal unit. Stability- or oscillator-constrained RNNs: coRNN,
antisymmetric RNN, Lipschitz RNN. Neuroscience's CTRNN at two time constants.
"""

ZOO: dict[str, str] = {
    "minlstm": "examples.zoo.minlstm:MinLSTM",
    "selective_ssm": "examples.zoo.selective_ssm:SelectiveSSM",
    "lru": "examples.zoo.lru:LRU",
    "cornn": "examples.zoo.cornn:CoRNN",
    "antisymmetric": "examples.zoo.antisymmetric:AntisymmetricRNN",
    "lipschitz": "examples.zoo.lipschitz:LipschitzRNN",
    "ctrnn_alpha0.1": "examples.zoo.ctrnn:CTRNN01",
    "ctrnn_alpha0.2": "examples.zoo.ctrnn:CTRNN02",
}
