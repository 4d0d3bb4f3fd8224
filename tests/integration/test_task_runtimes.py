"""Each runtime runs a hello world; builds are cached per version; task errors are one line.

A runtime whose tools are missing here skips its test with the reason (and fails it under
``LAKEPORT_REQUIRE_SERVICES=1``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakeport.errors import Invalid
from lakeport.tasks.runtimes import Job, Runtime, available_runtimes, runtime, runtime_names

pytestmark = pytest.mark.timeout(300)


def usable(name: str) -> Runtime:
    """The runtime, or a skip (a failure when services are required) saying what is missing."""
    found = runtime(name)
    reason = found.missing()
    if reason is not None:
        if os.environ.get("LAKEPORT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}: the {name} runtime is required (LAKEPORT_REQUIRE_SERVICES=1)")
        pytest.skip(f"{reason}: the {name} runtime cannot be tested")
    return found


def job(tmp_path: Path, files: dict[str, str], entry: str, *args: str,
        settings: dict[str, str] | None = None, version: str = "p/t/1") -> Job:
    code = tmp_path / "code"
    for name, text in files.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(text)
    return Job(code=code, entry=entry, args=list(args), settings=settings or {},
               cache=tmp_path / "cache", version_key=version)


def run(name: str, task: Job, progress: list[str] | None = None) -> str:
    """Prepare and run the job; its stdout (the run must succeed)."""
    argv = usable(name).prepare(task, (progress if progress is not None else []).append)
    done = subprocess.run(argv, cwd=task.code, capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (argv, done.stdout, done.stderr[-3000:])
    return done.stdout


def test_the_registry() -> None:
    assert runtime_names() == ["py", "js", "java", "c", "cpp", "sh", "spark", "component"]
    assert set(available_runtimes()) <= set(runtime_names())
    assert "py" in available_runtimes() and "sh" in available_runtimes()
    with pytest.raises(Invalid, match="unknown runtime 'cobol': use one of py, js, java"):
        runtime("cobol")


def test_py_without_requirements_runs_with_lakeports_interpreter(tmp_path: Path) -> None:
    task = job(tmp_path, {"main.py": "import sys\nprint('hello', sys.argv[1:], sys.executable)\n"},
               "main.py", "a", "b")
    assert run("py", task) == f"hello ['a', 'b'] {sys.executable}\n"


def test_py_with_requirements_gets_its_environment_once(tmp_path: Path) -> None:
    task = job(tmp_path, {"requirements.txt": "six==1.16.0\n",
                          "main.py": "import six, sys\nprint('hello', six.__version__)\n"},
               "main.py")
    progress: list[str] = []
    assert run("py", task, progress) == "hello 1.16.0\n"
    assert any("building the app's environment" in line for line in progress), progress
    again: list[str] = []
    argv = runtime("py").prepare(task, again.append)
    assert not any("building" in line for line in again), again
    assert Path(argv[0]).is_relative_to(tmp_path / "cache" / "py-envs")


def test_js(tmp_path: Path) -> None:
    task = job(tmp_path, {"hello.js": "console.log('hello', process.argv.slice(2).join(','))\n"},
               "hello.js", "x", "y")
    assert run("js", task) == "hello x,y\n"


JAVA = """package demo.app;
public class Hello {
    public static void main(String[] args) {
        System.out.println("hello " + String.join(",", args) + " " + Util.twice(21));
    }
}
"""
UTIL = "package demo.app;\nclass Util { static int twice(int n) { return 2 * n; } }\n"


def test_java_from_source_is_compiled_once_per_version(tmp_path: Path) -> None:
    task = job(tmp_path, {"src/Hello.java": JAVA, "src/Util.java": UTIL}, "src/Hello.java",
               "a")
    progress: list[str] = []
    assert run("java", task, progress) == "hello a 42\n"
    assert sum("compiling" in line for line in progress) == 1, progress
    again: list[str] = []
    assert run("java", task, again) == "hello a 42\n"
    assert not any("compiling" in line for line in again), again


def test_java_from_a_jar(tmp_path: Path) -> None:
    usable("java")
    source = tmp_path / "build"
    (source / "demo" / "app").mkdir(parents=True)
    (source / "demo" / "app" / "Hello.java").write_text(JAVA)
    (source / "demo" / "app" / "Util.java").write_text(UTIL)
    subprocess.run(["javac", "-d", str(source / "classes"), "demo/app/Hello.java",
                    "demo/app/Util.java"], cwd=source, check=True, timeout=120)
    code = tmp_path / "code"
    code.mkdir()
    subprocess.run(["jar", "--create", "--file", str(code / "app.jar"), "--main-class",
                    "demo.app.Hello", "-C", str(source / "classes"), "."], check=True,
                   timeout=120)
    task = Job(code=code, entry="app.jar", args=["j"], settings={},
               cache=tmp_path / "cache", version_key="p/t/1")
    assert run("java", task) == "hello j 42\n"


C = '#include <stdio.h>\n#include "greet.h"\nint main(int c, char **v) ' \
    '{ printf("%s %s\\n", GREETING, c > 1 ? v[1] : "-"); return 0; }\n'


def test_c_is_compiled_once_per_version_and_again_for_a_new_one(tmp_path: Path) -> None:
    task = job(tmp_path, {"hello.c": C, "greet.h": '#define GREETING "hello"\n'}, "hello.c",
               "c")
    progress: list[str] = []
    assert run("c", task, progress) == "hello c\n"
    binary = Path(runtime("c").prepare(task, progress.append)[0])
    built = binary.stat().st_mtime_ns
    assert run("c", task, progress) == "hello c\n"
    assert binary.stat().st_mtime_ns == built
    assert sum("compiling" in line for line in progress) == 1, progress

    newer = job(tmp_path, {"greet.h": '#define GREETING "hi"\n'}, "hello.c", "c",
                version="p/t/2")
    assert run("c", newer, progress) == "hi c\n"
    assert sum("compiling" in line for line in progress) == 2, progress


def test_cpp(tmp_path: Path) -> None:
    task = job(tmp_path, {"hello.cpp": "#include <iostream>\n#include <string>\n"
                          "int main(int c, char **v) { std::string s = \"hello\";\n"
                          "std::cout << s << ' ' << (c > 1 ? v[1] : \"-\") << std::endl; }\n"},
               "hello.cpp", "cpp")
    assert run("cpp", task) == "hello cpp\n"


def test_a_compile_error_is_invalid_with_the_compilers_first_lines(tmp_path: Path) -> None:
    usable("c")
    task = job(tmp_path, {"bad.c": "int main(void) { return oops; }\n"}, "bad.c")
    with pytest.raises(Invalid) as caught:
        runtime("c").prepare(task, lambda line: None)
    message = str(caught.value)
    assert message.startswith("bad.c does not compile: ") and "oops" in message, message
    assert "\n" not in message
    assert not list((tmp_path / "cache").rglob("task")), "no half build is kept"


def test_sh_and_a_bash_shebang(tmp_path: Path) -> None:
    task = job(tmp_path, {"hello.sh": "echo hello \"$1\"\n",
                          "bashy.sh": "#!/usr/bin/env bash\necho \"${BASH_VERSION:+bash}\"\n"},
               "hello.sh", "sh")
    assert run("sh", task) == "hello sh\n"
    bashy = Job(code=task.code, entry="bashy.sh", args=[], settings={}, cache=task.cache,
                version_key="p/t/1")
    assert run("sh", bashy) == "bash\n"


@pytest.mark.parametrize(("name", "entry", "message"), [
    ("py", "absent.py", "the entry 'absent.py' is not in the task's code"),
    ("sh", "../outside.sh", "the entry '../outside.sh' is not inside the task's code"),
    ("c", "main.py", "the entry 'main.py' is not a .c file"),
    ("component", "main.py", "the entry 'main.py' is not a .json file"),
])
def test_a_bad_entry_is_invalid(tmp_path: Path, name: str, entry: str, message: str) -> None:
    (tmp_path / "outside.sh").write_text("echo out\n")
    task = job(tmp_path, {"main.py": "print(1)\n"}, entry)
    with pytest.raises(Invalid, match=message):
        runtime(name).prepare(task, lambda line: None)


COMPONENT = Path(__file__).parents[1] / "fixtures" / "components" / "scaler"


def test_a_component_runs_its_configuration_with_the_runner(tmp_path: Path) -> None:
    """The entry is the configuration; the runner maps the input table in and the output
    table out, keeps the state per configuration id (``<project>.<task>``) and writes the
    job's summary to out/job.json."""
    from lakeport.tables import TableStore

    tables = TableStore(str(tmp_path / "tables"))
    source = tmp_path / "readings.csv"
    source.write_text("id,value\na,1.5\nb,2\n")
    tables.load("in.c-main.readings", source)
    files = {name: (COMPONENT / name).read_text() for name in ("main.py", "config.json")}
    task = job(tmp_path, files, "config.json", "--quiet", settings={"tables": str(tables.root)},
               version="plant/scale/3")
    argv = usable("component").prepare(task, lambda line: None)
    assert argv[argv.index("--config-id") + 1] == "plant.scale"
    run("component", task)
    scaled = tables.read("out.c-main.scaled").sort_by("id").to_pylist()
    assert scaled == [{"id": "a", "value": "3.0"}, {"id": "b", "value": "4.0"}]
    summary = json.loads((tmp_path / "out" / "job.json").read_text())
    assert summary["state"] == "success" and summary["config_id"] == "plant.scale"
    assert [t["destination"] for t in summary["tables_out"]] == ["out.c-main.scaled"]
    run("component", task)  # the state of the first run comes back
    again = json.loads((tmp_path / "out" / "job.json").read_text())
    assert again["id"] != summary["id"] and again["state"] == "success"
    from lakeport.components import StateStore

    assert StateStore().read("plant.scale").state == {"runs": 2}


SPARK = """import sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("count").getOrCreate()
print("count", spark.range(int(sys.argv[1])).count())
spark.stop()
"""


@pytest.mark.slow
def test_spark_counts_a_range_in_local_mode(tmp_path: Path) -> None:
    task = job(tmp_path, {"count.py": SPARK}, "count.py", "1000",
               settings={"master": "local[1]"})
    assert "count 1000\n" in run("spark", task)
