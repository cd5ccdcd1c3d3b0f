"""The ``pytest11`` entry point: registers trioecho's fixtures only when asked.

pytest loads every installed package's ``pytest11`` entry point into every test
run.  This module therefore defines no fixture: it adds ``--trioecho`` and the
``trioecho`` ini option, and only when one of them is set does it load
:mod:`trioecho.pytest_plugin` (which ``-p trioecho.pytest_plugin`` or
``pytest_plugins = ["trioecho.pytest_plugin"]`` load directly, without it).
``-p no:trioecho`` removes even this.
"""

from __future__ import annotations

import pytest

PLUGIN = "trioecho.pytest_plugin"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trioecho")
    group.addoption("--trioecho", action="store_true", default=False,
                    help="enable trioecho's TLS test fixtures (trioecho_pki, trioecho_tls_pair, "
                         "trioecho_echo_server, ...); see trioecho.pytest_plugin")
    parser.addini("trioecho", type="bool", default=False,
                  help="enable trioecho's TLS test fixtures (like --trioecho)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("trioecho") or config.getini("trioecho"):
        # import_plugin is a no-op when -p / pytest_plugins already loaded it.
        config.pluginmanager.import_plugin(PLUGIN)
