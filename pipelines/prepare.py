"""DVC stage `prepare`: gather the sources named in params.yaml (prepare.sources) into data/raw."""

from __future__ import annotations

import sys

from texpress.console import err_console, fail, out_console, warn
from texpress.data.config import PrepareConfig
from texpress.params import load_params
from texpress.data.prepare import gather
from texpress.errors import TexpressError

PARAMS = "params.yaml"
OUT = "data/raw"


def main() -> int:
    try:
        config = PrepareConfig.from_dict(load_params(PARAMS, "prepare"))
        with err_console.status(f"gathering {', '.join(config.sources)} into {OUT}"):
            counts = gather(config, OUT, warn=warn)
    except TexpressError as exc:
        return fail(str(exc)).exit_code
    for name, n in counts.items():
        out_console.print(f"prepare: {n} files from {name} -> {OUT}/{name}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
