"""A surge on the real PBX: SIPp callers into Asterisk 20 and `yijing run`, timed from each
caller's INVITE to the console's WebSocket (`call.offered`).

Uses the real-PBX tier's parts (`tests/pbx/`): the Asterisk that `make system` built, its
configuration as INSTALL.md writes it, a freshly seeded SQLite database. Prints the
figures of one run; exits non-zero if a call never reached the console or no Asterisk
is built. Usage: python bench/pbx_surge.py [CALLS [RATE]] (default 200 calls at 20/s).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import _migrate_and_seed  # noqa: E402
from tests.pbx.harness import Pbx, Yijing, find_asterisk, prompt_build  # noqa: E402
from tests.pbx.surge import surge  # noqa: E402


async def main(calls: int, rate: float) -> int:
    """One surge; 0 when every call reached the console."""
    home, reason = find_asterisk()
    if home is None:
        print(f"no Asterisk: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="yijing-surge-") as tmp:
        folder = Path(tmp)
        url = f"sqlite+aiosqlite:///{folder / 'yijing.db'}"
        await _migrate_and_seed(url, folder)
        pbx = Pbx(home=home, run_dir=folder / "asterisk", prompts_dir=folder / "prompts")
        prompt_build(pbx.prompts_dir)
        pbx.configure()
        pbx.start()
        app = Yijing(pbx=pbx, folder=folder / "yijing", db_url=url)
        try:
            await app.start()
            figures = await surge(pbx, app, folder / "surge", calls=calls, rate=rate)
        finally:
            await app.close()
            pbx.stop()
    print(figures.line())
    return 0 if figures.offered == figures.calls else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(
        asyncio.run(main(int(args[0]) if args else 200, float(args[1]) if len(args) > 1 else 20))
    )
