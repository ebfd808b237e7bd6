"""What the Dockerfile says its image is, read with Docker's own parser (the ``dockerfile`` package).

The tests compare this with the Helm chart's container spec and run the image's install the way
the image does. Only the final stage is the image; the build stage matters for its install
commands.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import dockerfile

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The PATH of the official python images (what ``$PATH`` expands to in the Dockerfile's ENV).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Stage:
    """One FROM ... up to the next.

    Attributes:
        base: the image named by FROM, build arguments expanded.
        name: the stage's AS name ("" for none).
        instructions: (instruction, flags, values) in order, instruction upper-case.
    """

    base: str
    name: str
    instructions: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]

    def values_of(self, instruction: str) -> list[tuple[str, ...]]:
        """The values of every occurrence of an instruction."""
        return [values for name, _, values in self.instructions if name == instruction]

    def flags_of(self, instruction: str) -> list[tuple[str, ...]]:
        """The flags (``--from=build``...) of every occurrence of an instruction."""
        return [flags for name, flags, _ in self.instructions if name == instruction]

    def last(self, instruction: str) -> tuple[str, ...]:
        """The values of the instruction's last occurrence (the one that counts), or ()."""
        found = self.values_of(instruction)
        return found[-1] if found else ()

    def run_commands(self) -> list[list[str]]:
        """Each RUN's shell commands (split at ``&&``) as argument lists."""
        commands = []
        for (text,) in self.values_of("RUN"):
            commands += [shlex.split(part) for part in text.split("&&")]
        return commands


@dataclass(frozen=True)
class Image:
    """The image's configuration (its final stage) and how it was built."""

    stages: tuple[Stage, ...]

    @property
    def final(self) -> Stage:
        """The stage that is the image."""
        return self.stages[-1]

    @property
    def user(self) -> tuple[str, str]:
        """USER as (user, group), as written."""
        (value,) = self.final.last("USER")
        user, _, group = value.partition(":")
        return user, group

    @property
    def env(self) -> dict[str, str]:
        """The final stage's ENV, ``$PATH`` expanded with the base image's PATH."""
        env = {"PATH": BASE_PATH}
        for values in self.final.values_of("ENV"):
            for name, value in zip(values[::2], values[1::2], strict=True):
                env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
        return env

    @property
    def workdir(self) -> str:
        """The final WORKDIR."""
        (value,) = self.final.last("WORKDIR")
        return value

    @property
    def exposed_ports(self) -> set[int]:
        """EXPOSEd TCP ports."""
        ports = set()
        for values in self.final.values_of("EXPOSE"):
            for value in values:
                port, _, protocol = value.partition("/")
                assert protocol in {"", "tcp"}, value
                ports.add(int(port))
        return ports

    @property
    def volumes(self) -> set[str]:
        """VOLUME paths."""
        return {path for values in self.final.values_of("VOLUME") for path in values}

    @property
    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        """The HEALTHCHECK's options (``{"interval": "10s"}``) and its exec-form command."""
        (flags,) = self.final.flags_of("HEALTHCHECK")
        kind, *command = self.final.last("HEALTHCHECK")
        assert kind == "CMD", "HEALTHCHECK must be CMD [...] (exec form) or the tests cannot compare it"
        options = dict(flag.removeprefix("--").split("=", 1) for flag in flags)
        return options, command

    @property
    def entrypoint(self) -> list[str]:
        """ENTRYPOINT (exec form)."""
        return list(self.final.last("ENTRYPOINT"))

    @property
    def cmd(self) -> list[str]:
        """CMD (exec form)."""
        return list(self.final.last("CMD"))

    def stage(self, name: str) -> Stage:
        """A stage by its AS name."""
        (found,) = [stage for stage in self.stages if stage.name == name]
        return found


def load_image(path: Path = DOCKERFILE) -> Image:
    """Parses the Dockerfile into its stages."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    base = name = ""
    for command in dockerfile.parse_file(str(path)):
        instruction = command.cmd.upper()
        if instruction == "ARG" and not stages and not base:
            for value in command.value:
                key, _, default = value.partition("=")
                args[key] = default
        elif instruction == "FROM":
            if base:
                stages.append(Stage(base, name, tuple(current)))
            image, *rest = command.value
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], image)
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else ""
            current = []
        else:
            current.append((instruction, tuple(command.flags), tuple(command.value)))
    stages.append(Stage(base, name, tuple(current)))
    return Image(tuple(stages))
