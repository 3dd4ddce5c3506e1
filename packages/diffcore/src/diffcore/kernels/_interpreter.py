"""A fix for Triton's CPU interpreter, applied by the kernels that loop (imports triton: only
``<op>/triton.py`` modules import this).

Triton 3.6's interpreter turns a loop bound into a Python int with ``int(array)``, which
numpy >= 2.4 refuses for the 1-element arrays the interpreter keeps scalars in, so every
``for`` loop over a runtime bound fails under ``TRITON_INTERPRET=1``
(https://github.com/triton-lang/triton/issues/9171, fixed upstream the same way). Compiled
kernels are unaffected; the fix only touches the interpreter and only when it is in use.
"""

from __future__ import annotations

from diffcore.kernels._dispatch import interpreting


def fix_loop_bounds() -> None:
    """Make the interpreter read a 1-element scalar as an int (idempotent; a no-op when not
    interpreting or when this Triton has no such hook)."""
    if not interpreting():
        return
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "diffcore_fixed", False):
        return

    def patch_lang_tensor(tensor, scope) -> None:
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(())))

    patch_lang_tensor.diffcore_fixed = True
    interpreter._patch_lang_tensor = patch_lang_tensor
