# SPDX-License-Identifier: Apache-2.0
"""torch_memory_saver, answered by memctl.

Installed by `make install-tms-compat` (never by `make install`), so that
programs written for torch_memory_saver run on memctl unchanged. The
implementation is memctl.tms; docs/torch_memory_saver.md says what differs.
"""
from memctl.tms import (TorchMemorySaver, TorchMemorySaverError, configure_subprocess,
                        memory_saver, torch_memory_saver)

__all__ = ["TorchMemorySaver", "TorchMemorySaverError", "torch_memory_saver",
           "configure_subprocess"]

# `make install-tms-compat` recognises its own files by this name and never
# overwrites a torch_memory_saver that lacks it.
__memctl_compat__ = True


def register_hook_mode(name, factory, uses_preload=True):
    """Refused: memctl answers the "preload" and "torch" hook modes itself."""
    raise NotImplementedError("register_hook_mode: custom hook modes are not supported by "
                              "memctl's torch_memory_saver (hook_mode takes 'preload' or "
                              "'torch')")
