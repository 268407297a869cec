"""The function form of a block: the signature is the declaration.

::

    @block("scale_latents", version=1)
    def scale_latents(latents: Latents, factor: float = 1.0) -> Latents:
        '''Multiply latents by a factor.

        Args:
            factor: the multiplier.
        '''
        return latents * factor

* parameters are inputs (annotation = port type, default = default; ``Input(default, "text")``
  or ``Annotated[T, "text"]`` or the docstring's ``Args:`` give descriptions);
* parameters named in ``components={...}`` receive components from the provider;
* parameters named in ``config=[...]`` receive static config (set when placed in a graph); the
  signature's default is the default (``config={"k": 2.0}`` also works, and must agree with it);
* a parameter annotated ``RunContext`` receives the run context;
* the return annotation is the output: a type (one output, named by ``output_name=``, else after
  the single input of that same type, else ``"output"``) or ``Outputs(a=T, b=U)`` for several;
  the function then returns a dict or a tuple in declared order.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .base import Block, _build_config_model, _component_refs, check_port_names, config_fields_from
from .context import RunContext
from .ports import MISSING, Output, Outputs, Port, parse_docstring, port_from_annotation
from .registry import register_block

__all__ = ["FunctionBlock", "block"]


class FunctionBlock(Block):
    """A block built from a plain function by ``@block``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        *,
        version: int = 1,
        components: Mapping[str, Any] | None = None,
        config: Any = None,
        outputs: Any = None,
        output_name: str | None = None,
        memoise: bool = True,
        description: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.version = version
        self.memoise = memoise
        owner = name or fn.__name__
        summary, arg_docs, out_docs = parse_docstring(fn.__doc__)
        self.description = description if description is not None else summary
        self.components = _component_refs(owner, components)
        params = inspect.signature(fn).parameters
        self.config_fields = config_fields_from(owner, _config_with_signature_defaults(owner, fn, params, config))
        try:
            hints = inspect.get_annotations(fn, eval_str=True)
        except Exception as exc:
            raise TypeError(f"block {owner}: cannot evaluate annotations: {exc}") from exc
        self.context_param = None
        inputs: dict[str, Port] = {}
        for pname, param in params.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise TypeError(f"block {owner}: parameter {pname!r} must be an ordinary keyword parameter")
            ann = hints.get(pname, Any)
            if ann is RunContext:
                self.context_param = pname
                continue
            if pname in self.components or pname in self.config_fields:
                continue
            default = MISSING if param.default is param.empty else param.default
            inputs[pname] = port_from_annotation(pname, ann, default, arg_docs.get(pname, ""))
        for group, names in (("component", self.components), ("config", self.config_fields)):
            for cname in names:
                if cname not in params:
                    raise TypeError(f"block {owner}: {group} {cname!r} is not a parameter of {fn.__name__}()")
        # Config field types come from the parameter annotations when the dict gave only defaults.
        for cname, port in list(self.config_fields.items()):
            ann = hints.get(cname)
            if ann is not None:
                self.config_fields[cname] = Port(cname, ann, port.default, port.description or arg_docs.get(cname, ""))
        self.inputs = inputs
        self.outputs = _outputs_from(owner, outputs if outputs is not None else hints.get("return"), output_name, out_docs)
        check_port_names(owner, "input", self.inputs)
        check_port_names(owner, "output", self.outputs)
        self._instance_config_model = _build_config_model(owner, self.config_fields)
        functools.update_wrapper(self, fn)
        super().__init__()

    def _on_config(self) -> None:
        self.__dict__.pop("_bound", None)

    def implementation(self) -> Callable[..., Any]:
        bound = self.__dict__.get("_bound")
        if bound is None:
            bound = functools.partial(self.fn, **self.config) if self.config else self.fn
            self.__dict__["_bound"] = bound
        return bound

    @property
    def identity(self) -> tuple[Any, ...]:
        if self.name is not None:
            return ("block", self.name, self.version)
        return ("fn", self.fn.__module__, self.fn.__qualname__, id(self.fn), self.version)

    def __copy__(self) -> FunctionBlock:
        clone = object.__new__(FunctionBlock)
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_bound"})
        return clone


def _config_with_signature_defaults(owner: str, fn: Callable[..., Any], params: Mapping[str, inspect.Parameter], config: Any) -> Any:
    """Config names (a list) take their defaults from the signature; a dict default must agree
    with the signature's (a value given twice that differs is an error, not a silent choice)."""
    if isinstance(config, (list, tuple, set, frozenset)):
        defaults = {}
        for cname in config:
            param = params.get(cname)
            if param is None:
                raise TypeError(f"block {owner}: config {cname!r} is not a parameter of {fn.__name__}()")
            if param.default is param.empty:
                raise TypeError(f"block {owner}: config parameter {cname!r} of {fn.__name__}() needs a default value")
            defaults[cname] = param.default
        return defaults
    if isinstance(config, Mapping):
        for cname, value in config.items():
            param = params.get(cname)
            given = value.default if isinstance(value, Port) else value
            if param is not None and param.default is not param.empty and given is not MISSING and param.default != given:
                raise TypeError(
                    f"block {owner}: config {cname!r} defaults to {given!r} in config= but to {param.default!r} in "
                    f"{fn.__name__}()'s signature; declare it once (config=[{cname!r}] takes the signature's)"
                )
    return config


def _outputs_from(owner: str, spec: Any, output_name: str | None, docs: dict[str, str]) -> dict[str, Port]:
    if spec is None or spec is inspect.Signature.empty:
        raise TypeError(f"block {owner}: give the output type as the return annotation or outputs=")
    if isinstance(spec, Mapping):
        spec = Outputs(**spec)
    if isinstance(spec, Outputs):
        return {
            n: Port(n, o.type, MISSING, o.description or docs.get(n, "")) for n, o in spec.ports.items()
        }
    if isinstance(spec, Output):
        name = output_name or "output"
        return {name: Port(name, spec.type, MISSING, spec.description or docs.get(name, ""))}
    name = output_name or "output"
    return {name: Port(name, spec, MISSING, docs.get(name, ""))}


def block(
    name: str | Callable[..., Any] | None = None,
    *,
    version: int = 1,
    components: Mapping[str, Any] | None = None,
    config: Any = None,
    outputs: Any = None,
    output_name: str | None = None,
    memoise: bool = True,
    description: str | None = None,
    register: bool = True,
) -> Any:
    """Declare a block from a function (see the module docstring).

    ``name`` is the registered name (default: the function's name); ``register=False`` keeps it
    out of the registry (such a block can run and nest but cannot be saved to JSON).
    A single output is named ``output_name`` — by default the input of the same type's name when
    the function has exactly one such input (``latents -> latents``), else ``"output"``.
    """

    def decorate(fn: Callable[..., Any]) -> FunctionBlock:
        block_name = name if isinstance(name, str) else fn.__name__
        out_name = output_name
        if out_name is None and outputs is None:
            out_name = _guess_output_name(fn)
        made = FunctionBlock(
            fn,
            block_name,
            version=version,
            components=components,
            config=config,
            outputs=outputs,
            output_name=out_name,
            memoise=memoise,
            description=description,
        )
        if register:
            register_block(made)
        return made

    if callable(name) and not isinstance(name, str):
        fn, name = name, None
        return decorate(fn)
    return decorate


def _guess_output_name(fn: Callable[..., Any]) -> str | None:
    """``def scale(latents: Latents, ...) -> Latents`` outputs ``latents``: the one input of the
    returned type names the output (one spelling per concept). Otherwise ``"output"``."""
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception:
        return None
    ret = hints.get("return")
    if ret is None or isinstance(ret, (Outputs, Output)):
        return None
    same = [p for p, t in hints.items() if p != "return" and t is ret]
    return same[0] if len(same) == 1 else None
