"""tools/analysis_tools/memory_benchmark.py: resident memory of a backbone over many
input sizes (here a few small ones: the report's structure and its arithmetic; the
200-size run of docs/benchmarks.md is what shows that nothing grows)."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'analysis_tools' / 'memory_benchmark.py'
spec = importlib.util.spec_from_file_location('memory_benchmark', TOOL)
memory_benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory_benchmark)

END = re.compile(r'(inference|training): after (\d+) sizes RSS (\d+) MB, (\d+) MB after '
                 r'malloc_trim \(growth after warm-up ([+-]\d+) MB\)')
WARM = re.compile(r'(inference|training): after (\d+) warm-up sizes RSS (\d+) MB, '
                  r'(\d+) MB after malloc_trim')


def test_reports_the_memory_after_warm_up_and_at_the_end():
    proc = subprocess.run(
        [sys.executable, str(TOOL), '--infer-sizes', '4', '--train-sizes', '3',
         '--warmup', '1', '--min-side', '32', '--max-side', '48', '--threads', '1'],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r'SMLPNet \(default arch\): RSS at start \d+ MB', lines[0])
    warm = [WARM.fullmatch(line) for line in lines[1::2]]
    end = [END.fullmatch(line) for line in lines[2::2]]
    assert len(lines) == 5 and all(warm) and all(end), proc.stdout
    for w, e, phase, sizes in zip(warm, end, ('inference', 'training'), (4, 3)):
        assert (w[1], w[2], e[1], int(e[2])) == (phase, '1', phase, sizes)
        base, settled, growth = int(w[4]), int(e[4]), int(e[5])
        # printed rounded: the growth is the difference within one MB
        assert abs(growth - (settled - base)) <= 1
        # a few more small inputs cannot need much memory after the warm-up
        assert abs(growth) < 256, proc.stdout


@pytest.mark.parametrize('argv, message', [
    (['--min-side', '16'], 'need 32 <= min <= max'),
    (['--min-side', '64', '--max-side', '48'], 'need 32 <= min <= max'),
    (['--warmup', '0'], '--warmup 0: must be at least 1 and smaller than'),
    (['--warmup', '50'], '--warmup 50: must be at least 1 and smaller than'),
    (['--min-side', '32', '--max-side', '33'],
     'sides 32-33 give only 4 different sizes'),
])
def test_bad_arguments_are_named(capsys, argv, message):
    with pytest.raises(SystemExit):
        memory_benchmark.parse_args(argv)
    assert message in capsys.readouterr().err
