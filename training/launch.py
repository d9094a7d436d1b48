"""torchrun, with an exit code that says whether another try can help.

torchrun exits 1 whatever its workers died of, so a controller that decides on the container's
exit code (a Job's podFailurePolicy) cannot tell a bad flag from a lost peer. When the first
worker to fail exited with CONFIG_ERROR_EXIT (bad flags or config, a dataset that cannot be had:
the same on every try; the others were then stopped), this launcher exits with it too; any other
failure stays 1, which is retried.
"""

from __future__ import annotations

import sys

from training.errors import CONFIG_ERROR_EXIT


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(argv)
    except ChildFailedError as e:
        print(e.format_msg(), file=sys.stderr, flush=True)  # torchrun's failure summary
        _, first = e.get_first_failure()
        return CONFIG_ERROR_EXIT if first.exitcode == CONFIG_ERROR_EXIT else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
