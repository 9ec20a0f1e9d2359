"""A third-party handler, installed the way a package installs one: an entry point in restyle.handlers.

The plugin below is a real distribution on disk (a module and its dist-info with
entry_points.txt); restyle finds it through importlib.metadata exactly as it finds its
own handlers, and every door (here the CLI, in a real process) can run it by name.
"""

import json

import numpy as np
import pytest

from tests.conftest import decode_frames, env_with_path, packets, plugin_site, psnr
from tests.test_cli import assert_one_clear_line, restyle

PLUGIN = '''
"""restyle_posterize: an example handler that reduces each colour channel to a few levels."""
import numpy as np

from restyle.errors import ModelError
from restyle.handlers.base import BaseHandler, OutputKind


class PosterizeHandler(BaseHandler):
    name = "posterize"
    output = OutputKind.FRAMES

    def check(self, spec):
        levels = spec.params.get("levels", 4)
        if not isinstance(levels, int) or not 2 <= levels <= 64:
            raise ModelError(f"posterize: levels must be a whole number from 2 to 64, got {levels!r}")

    def load(self, load, runtime):
        return Posterize()


class Posterize:
    output = OutputKind.FRAMES
    description = "posterize"

    def predict(self, frames, params):  # params: BaseHandler.params, the spec's free-form params
        step = 256 // params.get("levels", 4)
        return (frames // step * step + step // 2).astype(np.uint8)
'''


@pytest.fixture()
def plugin_env(tmp_path) -> dict[str, str]:
    site = plugin_site(tmp_path / "site", "posterize", "restyle_posterize:PosterizeHandler", PLUGIN)
    return env_with_path(site)


@pytest.mark.slow
def test_a_plugin_handler_runs_through_the_cli_by_name(plugin_env, clips, tmp_path):
    output = tmp_path / "poster.mp4"
    done = restyle(
        "run", clips["pal"], "-o", output, "--model", "posterize", "--param", "levels=4", "--json", env=plugin_env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == "posterize"
    _, originals = decode_frames(clips["pal"])
    _, posters = decode_frames(output)
    assert len(posters) == len(originals) == 75
    expected = (originals[30] // 64 * 64 + 32).astype(np.uint8)
    assert psnr(expected, posters[30]) > 30  # the plugin's pixels, through one lossy encode
    assert packets(output, "audio") == packets(clips["pal"], "audio")
    assert_one_clear_line(
        restyle(
            "run", clips["pal"], "-o", tmp_path / "x.mp4", "--model", "posterize", "--param", "levels=1", env=plugin_env
        ),
        "levels must be a whole number",
    )


def test_without_the_plugin_installed_the_name_is_unknown(clips, tmp_path):
    assert_one_clear_line(
        restyle("run", clips["pal"], "-o", tmp_path / "x.mp4", "--model", "posterize"), "unknown model 'posterize'"
    )
