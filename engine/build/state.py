"""What a build knows while it runs: the request, the stage's image so far, its variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from layerlab.engine.image import DEFAULT_PATH, Image, ImageDraft


@dataclass
class BuildRequest:
    """A `layerlab build` after flag parsing."""

    context: str
    dockerfile: str | None = None
    tags: list[str] = field(default_factory=list)
    no_cache: bool = False
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str | None = None
    # TODO: Docker runs build steps on the default bridge. `--network bridge` works as root, but it
    # adds a bridge and NAT rules to every store that builds, and rootless builds would need slirp4netns.
    network: str = "host"
    secrets: dict[str, str] = field(default_factory=dict)  # --secret id -> host file path
    cache_from: list[str] = field(default_factory=list)  # --cache-from image references
    # The Dockerfile's text when it comes from standard input (`-f -` or `build -`), else None.
    dockerfile_text: str | None = None


@dataclass
class StageState:
    """One stage's progress: the image after the last step and the variables in scope.

    `image` is None while a `FROM scratch` stage has no step yet. `args`
    holds the ARGs declared in this stage with their values; ENV values
    live in the image config and win over ARGs of the same name.
    """

    image: Image | None
    args: dict[str, str] = field(default_factory=dict)
    missed: bool = False
    # Set after FROM ran the base image's ONBUILD triggers: the next new image drops them.
    clear_onbuild: bool = False

    @property
    def image_id(self) -> str:
        return self.image.id if self.image else "scratch"

    @property
    def config_env(self) -> dict[str, str]:
        if self.image is None:
            return {}
        pairs = (entry.partition("=") for entry in self.image.settings.get("Env") or [])
        return {key: value for key, _, value in pairs}

    def expansion_env(self) -> dict[str, str]:
        env = dict(self.args)
        env.update(self.config_env)
        return env

    def draft(self) -> ImageDraft:
        draft = ImageDraft.from_image(self.image) if self.image else ImageDraft.empty()
        if self.clear_onbuild:
            draft.settings.pop("OnBuild", None)
        env = draft.settings.get("Env") or []
        if not any(entry.startswith("PATH=") for entry in env):
            # Both of Docker's builders give a stage whose base image sets no PATH the default one.
            draft.settings["Env"] = [f"PATH={DEFAULT_PATH}"] + list(env)
        return draft

    def settings(self) -> dict:
        return self.image.settings if self.image else {}
