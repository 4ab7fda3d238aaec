"""A module with a forward of its own, traced with torch.fx and rebuilt in Kiln's shape (canonical.py).

The graph is a data flow from the input to the output. A layer call becomes a layer; `a + b` and `torch.cat` are
where paths meet. Kiln's composites start every branch from one value, so each join is rebuilt from the last
value that every path into it passes through (its dominator): `x + f(x)` is a Residual over f, `f(x) + g(x)` a
Sum, `torch.cat([x, f(x)], -1)` a Concat, and what comes before that value is the Sequential leading to it.

Only APIs present in torch 1.13 and 2.x are used.
"""
import operator
import os
import re

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

import kiln_nn

from .canonical import MAX_BRANCHES, check_layer, in_mode
from .errors import ExportError

# Traced through: the user's modules and the composites (rebuilt from their forward). Kept whole: every module of
# torch.nn (as torch.fx does) and kiln_nn's layers.
KILN_LAYERS = (kiln_nn.RMSNorm, kiln_nn.LayerNormNoBias)


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m, qualified_name):
        return isinstance(m, KILN_LAYERS) or super().is_leaf_module(m, qualified_name)


def _trace(module, training):
    """module's graph with every submodule in train (training=True) or eval mode."""
    tracer = _Tracer()
    tracer.record_stack_traces = True
    try:
        return in_mode(module, training, lambda: tracer.trace(module), run=False)
    except ExportError:
        raise
    except Exception as e:  # torch.fx raises TraceError, TypeError, RuntimeError... for code it cannot follow
        raise ExportError(f"{type(module).__name__}.forward cannot be traced by torch.fx ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); Kiln needs straight-line code") from None


_TORCH_DIR = os.path.dirname(torch.__file__)
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def location(node):
    """' at model.py:42': the innermost line of the user's code that made the node ('' when unknown). torch.fx
    records the stack from the frame that called it, innermost first in torch 1.x and last in 2.x; frames in
    torch itself (F.relu calling into torch.fx) are skipped."""
    frames = _FRAME.findall(node.stack_trace or "")
    if int(torch.__version__.split(".")[0]) >= 2:
        frames.reverse()
    user = [(f, n) for f, n in frames if not f.startswith(_TORCH_DIR)]
    return f" at {os.path.basename(user[0][0])}:{user[0][1]}" if user else ""


# Element-wise and reshaping calls: the torch functions and Tensor methods of each, and their parameters after the
# input (with torch's defaults), as F's signatures give them.
_CALLS = {
    "relu": ([F.relu, torch.relu], ["relu", "relu_"], [("inplace", False)]),
    "sigmoid": ([torch.sigmoid, F.sigmoid], ["sigmoid", "sigmoid_"], []),
    "tanh": ([torch.tanh, F.tanh], ["tanh", "tanh_"], []),
    "gelu": ([F.gelu], [], [("approximate", "none")]),
    "silu": ([F.silu], [], [("inplace", False)]),
    "hardswish": ([F.hardswish], [], [("inplace", False)]),
    "leaky_relu": ([F.leaky_relu], [], [("negative_slope", 0.01), ("inplace", False)]),
    "elu": ([F.elu], [], [("alpha", 1.0), ("inplace", False)]),
    "softplus": ([F.softplus], [], [("beta", 1.0), ("threshold", 20.0)]),
    "softmax": ([F.softmax, torch.softmax], ["softmax"], [("dim", None), ("_stacklevel", 3), ("dtype", None)]),
    "log_softmax": ([F.log_softmax, torch.log_softmax], ["log_softmax"],
                    [("dim", None), ("_stacklevel", 3), ("dtype", None)]),
    "flatten": ([torch.flatten], ["flatten"], [("start_dim", 0), ("end_dim", -1)]),
    "unflatten": ([getattr(torch, "unflatten", None)], ["unflatten"], [("dim", None), ("sizes", None)]),
    "reshape": ([torch.reshape], ["reshape", "view"], []),
    "contiguous": ([], ["contiguous"], []),
    "dropout": ([F.dropout], [], [("p", 0.5), ("training", True), ("inplace", False)]),
    "layer_norm": ([F.layer_norm], [], [("normalized_shape", None), ("weight", None), ("bias", None), ("eps", 1e-5)]),
    "linear": ([F.linear], [], [("weight", None), ("bias", None)]),
    "add": ([operator.add, operator.iadd, torch.add], ["add", "add_"], [("other", None), ("alpha", 1)]),
    "cat": ([torch.cat, getattr(torch, "concat", None)], [], [("dim", 0)]),
}
_FUNCTIONS = {f: name for name, (fs, _, _) in _CALLS.items() for f in fs if f is not None}
_METHODS = {m: name for name, (_, ms, _) in _CALLS.items() for m in ms}


def _call_name(node):
    if node.op == "call_function":
        fn = node.target
        return f"{getattr(fn, '__module__', None) or 'torch'}.{getattr(fn, '__name__', str(fn))}"
    return f"Tensor.{node.target}"


def _bind(node, name):
    """The call's input and its other arguments by name, torch's defaults filled in."""
    params = _CALLS[name][2]
    args = list(node.args)
    first = args.pop(0) if args else node.kwargs.get("input", node.kwargs.get("tensors"))
    if name == "reshape":  # x.view(a, b) / x.view((a, b)) / torch.reshape(x, shape): the shape is the result's
        return first, {}
    bound = dict(params)
    for (key, _), value in zip(params, args):
        bound[key] = value
    bound.update({k: v for k, v in node.kwargs.items() if k not in ("input", "tensors")})
    return first, bound


class _Rebuilder:
    """One traced graph and the Kiln-shaped modules rebuilt from it."""

    def __init__(self, module, graph, train_graph):
        self.root = module
        self.graph = graph
        self.train_nodes = {n.name: n for n in train_graph.nodes}
        self.order = {n: k for k, n in enumerate(graph.nodes)}
        self.inputs = [n for n in graph.nodes if n.op == "placeholder"]
        self.ops = {}          # node -> (kind, ...) as _classify gives it
        self.dominators = {}   # node -> the nodes every path from the input to it passes, itself included
        self.built = set()     # nodes made into a layer or a join already: each may appear once
        self.attributes_used = {}
        self.modules_used = {}

    # ---- what a node is ------------------------------------------------------------------------------------
    def op(self, node):
        if node not in self.ops:
            self.ops[node] = self._classify(node)
        return self.ops[node]

    def what(self, node):
        if node.op == "call_module":
            return f"{node.target} ({type(self.root.get_submodule(node.target)).__name__}){location(node)}"
        if node.op == "get_attr":
            return f"{node.target} (a tensor attribute){location(node)}"
        return f"{_call_name(node)}{location(node)}"

    def refuse(self, node, why="has no Kiln equivalent"):
        raise ExportError(f"{self.what(node)} {why}")

    def _classify(self, node):
        if node.op == "placeholder":
            return ("input",)
        if node.op == "call_module":
            return self._module_call(node)
        if node.op == "call_function" and node.target in _FUNCTIONS:
            return self._call(node, _FUNCTIONS[node.target])
        if node.op == "call_method" and node.target in _METHODS:
            return self._call(node, _METHODS[node.target])
        self.refuse(node)

    def _module_call(self, node):
        m = self.root.get_submodule(node.target)
        if isinstance(m, nn.Identity):
            return ("pass", node.args[0])
        check_layer(m, node.target, location(node))
        if next(iter(m.parameters(recurse=False)), None) is not None or list(m.buffers(recurse=False)):
            if m in self.modules_used and self.modules_used[m] is not node:
                self.refuse(node, f"is called a second time (first{location(self.modules_used[m])}); Kiln gives "
                                  "every layer its own weights")
            self.modules_used[m] = node
        if isinstance(m, nn.Bilinear):
            return ("bilinear", m, node.args[0], node.args[1])
        if len(node.args) != 1 or node.kwargs:
            self.refuse(node, "is called with more than one argument")
        return ("layer", m, node.args[0])

    def _call(self, node, name):
        x, a = _bind(node, name)
        if name == "add":
            return self._add(node, x, a)
        if name == "cat":
            return self._cat(node, x, a)
        if not isinstance(x, torch.fx.Node):
            self.refuse(node, "is applied to a constant")
        if name == "contiguous":
            return ("pass", x)
        if name == "dropout":
            return self._dropout(node, x, a)
        if name in ("reshape", "flatten", "unflatten"):
            return self._reshape(node, x, a, name)
        return ("layer", self._layer(node, name, a), x)

    def _layer(self, node, name, a):
        if name in ("relu", "sigmoid", "tanh", "silu", "hardswish"):
            return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "silu": nn.SiLU,
                    "hardswish": nn.Hardswish}[name]()
        if name == "gelu":
            return nn.GELU(approximate=a["approximate"])
        if name == "leaky_relu":
            return nn.LeakyReLU(a["negative_slope"])
        if name == "elu":
            return nn.ELU(a["alpha"])
        if name == "softplus":
            return nn.Softplus(a["beta"], a["threshold"])
        if name in ("softmax", "log_softmax"):
            if a["dim"] is None:
                self.refuse(node, "has no dim (an implicit dim is deprecated in torch); give it one")
            if a["dtype"] is not None:
                self.refuse(node, f"computes in {a['dtype']}; Kiln computes in float32")
            return (nn.Softmax if name == "softmax" else nn.LogSoftmax)(a["dim"])
        if name == "layer_norm":
            return self._layer_norm(node, a)
        return self._linear(node, a)

    def _parameter(self, node, arg):
        """The tensor an argument names (None stays None); each may be used once."""
        if arg is None:
            return None
        if not isinstance(arg, torch.fx.Node) or arg.op != "get_attr":
            self.refuse(node, "takes a weight that is not a parameter of the module")
        if arg.target in self.attributes_used:
            self.refuse(node, f"uses {arg.target} a second time; Kiln gives every layer its own weights")
        self.attributes_used[arg.target] = node
        t = self.root
        for part in arg.target.split("."):
            t = getattr(t, part)
        if t.dtype != torch.float32:
            self.refuse(node, f"takes {arg.target} of {t.dtype}; Kiln's weights are float32")
        return t

    def _layer_norm(self, node, a):
        weight, bias = self._parameter(node, a["weight"]), self._parameter(node, a["bias"])
        if weight is None and bias is not None:
            self.refuse(node, "has a bias but no weight")
        shape = tuple(a["normalized_shape"]) if not isinstance(a["normalized_shape"], int) else (a["normalized_shape"],)
        m = kiln_nn.LayerNorm(shape, eps=a["eps"], elementwise_affine=weight is not None, bias=bias is not None
                              or weight is None)
        with torch.no_grad():
            if weight is not None:
                m.weight.copy_(weight)
            if bias is not None:
                m.bias.copy_(bias)
        return m

    def _linear(self, node, a):
        weight, bias = self._parameter(node, a["weight"]), self._parameter(node, a["bias"])
        m = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            m.weight.copy_(weight)
            if bias is not None:
                m.bias.copy_(bias)
        return m

    def _dropout(self, node, x, a):
        train = self.train_nodes.get(node.name)
        if train is None or train.target != node.target:
            self.refuse(node, "is not in the train-mode graph: forward must run the same code in both modes")
        training = (_bind(train, "dropout")[1]["training"], a["training"])
        if training == (True, True):
            self.refuse(node, "drops in eval mode too (training=True); write training=self.training")
        if training == (False, False):
            return ("pass", x)
        return ("layer", nn.Dropout(a["p"]), x)

    def _shape(self, node):
        return node.meta["shape"]

    def _reshape(self, node, x, a, name):
        before, after = self._shape(x), self._shape(node)
        if after[:1] != before[:1]:
            self.refuse(node, f"reshapes {list(before)} to {list(after)}: the batch dim must stay")
        m = _as_flatten_or_unflatten(before, after)
        if m is None:
            self.refuse(node, f"reshapes {list(before)} to {list(after)}, which is neither a Flatten nor an "
                              "Unflatten")
        return ("pass", x) if m == "same" else ("layer", m, x)

    def _add(self, node, x, a):
        other = a["other"]
        if not isinstance(x, torch.fx.Node) or not isinstance(other, torch.fx.Node):
            self.refuse(node, "adds a constant; Kiln adds the outputs of branches")
        if a["alpha"] != 1:
            self.refuse(node, f"scales by alpha={a['alpha']}")
        for t in (x, other):
            if t.op == "get_attr":
                self.refuse(node, f"adds the tensor {t.target}; Kiln adds the outputs of branches")
        if self._shape(x) != self._shape(other):
            self.refuse(node, f"adds {list(self._shape(x))} to {list(self._shape(other))} (broadcasting); Kiln's "
                              "Sum and Residual add values of one shape")
        terms = [x, other]
        # ((a + b) + c), the inner sum used only here: one Sum over a, b, c (Kiln's Sum adds left to right too)
        if x.op != "placeholder" and self.op(x)[0] == "add" and len(x.users) == 1:
            terms = list(self.op(x)[1]) + [other]
        return ("add", terms)

    def _cat(self, node, tensors, a):
        if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, torch.fx.Node) for t in tensors):
            self.refuse(node, "concatenates something other than a list of tensors")
        rank = len(self._shape(node))
        if a["dim"] % rank == 0:
            self.refuse(node, "concatenates along dim 0, the batch dim; Kiln concatenates per-sample dims")
        return ("cat", list(tensors), a["dim"])

    # ---- where paths meet ----------------------------------------------------------------------------------
    def sources(self, node):
        op = self.op(node)
        if op[0] in ("input", "bilinear"):
            return []  # the start of the network's flow (a Bilinear reads both inputs and nothing else)
        if op[0] in ("add", "cat"):
            return list(op[1])
        return [op[-1]]

    def dominated_by(self, node):
        if node not in self.dominators:
            sets = [self.dominated_by(s) for s in self.sources(node)]
            self.dominators[node] = {node}.union(set.intersection(*sets) if sets else set())
        return self.dominators[node]

    def split_point(self, terms):
        """The last value every path into every term passes through."""
        common = set.intersection(*[self.dominated_by(t) for t in terms])
        return max(common, key=self.order.__getitem__)

    def items(self, start, end):
        """The Kiln items that compute `end` from `start` (which dominates it), in order."""
        if end is start:
            return []
        op = self.op(end)
        if op[0] == "input" or op[0] == "bilinear":
            raise AssertionError(f"{end} is not computed from {start}")
        if op[0] == "pass":
            return self.items(start, op[1])
        if end in self.built:
            self.refuse(end, "feeds two branches below the value where they split; each of Kiln's branches starts "
                             "from that value, so a value shared between branches has no Kiln equivalent")
        self.built.add(end)
        if op[0] == "layer":
            return self.items(start, op[2]) + [op[1]]
        terms = op[1]
        if len(terms) > MAX_BRANCHES:
            self.refuse(end, f"joins {len(terms)} branches; Kiln takes at most {MAX_BRANCHES}")
        split = self.split_point(terms)
        leading = self.items(start, split)
        branches = [self.items(split, t) for t in terms]
        if op[0] == "add" and len(terms) == 2 and [] in branches:
            body = branches[1] if branches[0] == [] else branches[0]
            return leading + [kiln_nn.Residual(*(body or [nn.Identity()]))]
        wrapped = [nn.Identity() if not b else b[0] if len(b) == 1 else nn.Sequential(*b) for b in branches]
        if op[0] == "add":
            return leading + [kiln_nn.Sum(*wrapped)]
        return leading + [kiln_nn.Concat(*wrapped, dim=op[2])]

    def network(self):
        outputs = [n for n in self.graph.nodes if n.op == "output"][0].args[0]
        if not isinstance(outputs, torch.fx.Node):
            raise ExportError(f"{type(self.root).__name__}.forward returns {type(outputs).__name__}; Kiln's network "
                              "has one output tensor")
        self.classify_in_order(outputs)
        if len(self.inputs) == 1:
            return nn.Sequential(*self.items(self.inputs[0], outputs))
        return kiln_nn.Sequential(*self._bilinear_items(outputs))

    def classify_in_order(self, output):
        """Every node the output depends on, in the order forward runs them: the first refusal is the first call
        Kiln has no equivalent for, not one that only consumes its result."""
        needed, stack = set(), [output]
        while stack:
            node = stack.pop()
            if node not in needed:
                needed.add(node)
                stack += node.all_input_nodes
        for node in self.graph.nodes:
            # A weight is taken by the call that reads it, a size (x.size(0)) by the reshape that uses it.
            if node in needed and (node.op == "call_module" or "shape" in node.meta and node.op != "get_attr"):
                self.op(node)

    def _bilinear_items(self, output):
        """Two inputs: the network must start with a Bilinear reading both, in order, and nothing else may."""
        starts = [n for n in self.graph.nodes if n.op == "call_module" and self.op(n)[0] == "bilinear"]
        if len(starts) != 1 or list(starts[0].args) != self.inputs:
            raise ExportError(f"{type(self.root).__name__}: with two inputs, Kiln's network starts with one Bilinear "
                              "that reads both, in order")
        for x in self.inputs:
            for user in x.users:
                if user is not starts[0]:
                    self.refuse(user, "reads a network input that the leading Bilinear reads; with two inputs, "
                                      "Kiln's network starts with the Bilinear")
        return [self.op(starts[0])[1]] + self.items(starts[0], output)


class _Shapes(torch.fx.Interpreter):
    """Runs the graph, keeping each tensor's shape in its node's meta["shape"]."""

    def run_node(self, n):
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["shape"] = tuple(result.shape)
        return result


def _as_flatten_or_unflatten(before, after):
    """nn.Flatten / nn.Unflatten that reshapes `before` to `after` (batch dim first in both), "same", or None."""
    if before == after:
        return "same"
    n = 0
    while n < min(len(before), len(after)) and before[n] == after[n]:
        n += 1  # the dims both keep at the front
    tail = 0
    while tail < min(len(before), len(after)) - n and before[-1 - tail] == after[-1 - tail]:
        tail += 1  # and at the back
    merged, split = before[n:len(before) - tail], after[n:len(after) - tail]
    numel = lambda dims: int(torch.tensor(dims, dtype=torch.int64).prod()) if dims else 1  # noqa: E731
    if len(split) == 1 and len(merged) > 1 and numel(merged) == split[0]:
        end = len(before) - tail - 1
        return nn.Flatten(n, -1 if end == len(before) - 1 else end)
    if len(merged) == 1 and len(split) > 1 and numel(split) == merged[0]:
        return nn.Unflatten(n, tuple(split))
    return None


def rebuild(module, example_inputs):
    """module rebuilt in Kiln's shape from its traced graph (torch.fx). The shapes each node sees come from a run
    on a batch of 3 (a reshape that keeps the batch dim can then be told from one that does not)."""
    graph = _trace(module, training=False)
    train_graph = _trace(module, training=True)
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != len(example_inputs):
        raise ExportError(f"{type(module).__name__}.forward takes {len(inputs)} inputs, but "
                          f"{len(example_inputs)} example inputs were given")
    probe = tuple(torch.randn((3,) + tuple(x.shape[1:])) for x in example_inputs)
    in_mode(module, False, lambda: _Shapes(torch.fx.GraphModule(module, graph)).run(*probe))
    return _Rebuilder(module, graph, train_graph).network()
