/**
 * Dockerfile languages for the editor: the plain Dockerfile grammar for
 * files, and a variant for notebook cells whose first line is the
 * `%%dockerfile` cell magic.
 */

import { StreamLanguage, StreamParser, LanguageSupport } from '@codemirror/language';
import { dockerFile } from '@codemirror/legacy-modes/mode/dockerfile';
import {
  IEditorLanguage,
  IEditorLanguageRegistry
} from '@jupyterlab/codemirror';

/** The MIME type of Dockerfiles, which JupyterLab 4.6 already registers. */
export const DOCKERFILE_MIME = 'text/x-dockerfile';

/** The MIME type that a `%%dockerfile` cell's editor is switched to. */
export const DOCKERFILE_CELL_MIME = 'text/x-layerlab-dockerfile';

// The same test as the kernel's `is_dockerfile_cell`: blank lines may come
// first, then a line that starts with `%%dockerfile` as a whole word.
const DOCKERFILE_CELL = /^(?:[ \t]*\r?\n)*%%dockerfile(?:[ \t]|\r?\n|$)/;

// The magic's name at the start of `%%dockerfile PATH -t TAG`.
const MAGIC_NAME = /^%%dockerfile\b/;

/** Return whether a code cell's source is a `%%dockerfile` cell. */
export function isDockerfileCell(source: string): boolean {
  return DOCKERFILE_CELL.test(source);
}

/**
 * The Dockerfile stream parser, extended to mark the `%%dockerfile` magic
 * name as `meta` and its arguments as `string`. The magic line is not part
 * of the Dockerfile, so the Dockerfile parser does not see it.
 */
const dockerfileCellParser: StreamParser<unknown> = {
  ...(dockerFile as StreamParser<unknown>),
  name: 'dockerfile',
  token(stream, state) {
    if (stream.sol() && stream.match(MAGIC_NAME)) {
      return 'meta';
    }
    if (stream.string.match(MAGIC_NAME)) {
      stream.eatSpace();
      if (stream.eol()) {
        return null;
      }
      stream.skipToEnd();
      return 'string';
    }
    return dockerFile.token(stream, state as never);
  }
};

let cellLanguage: LanguageSupport | null = null;

function loadCellLanguage(): LanguageSupport {
  if (cellLanguage === null) {
    cellLanguage = new LanguageSupport(StreamLanguage.define(dockerfileCellParser));
  }
  return cellLanguage;
}

/**
 * Register the Dockerfile languages that `registry` lacks.
 *
 * JupyterLab 4.6 registers `text/x-dockerfile` for files named `Dockerfile`
 * only. The cell language also takes the `.dockerfile` extension, so
 * `app.dockerfile` and `build.Dockerfile` open highlighted. It highlights a
 * plain Dockerfile exactly as the file language does.
 */
export function registerLanguages(registry: IEditorLanguageRegistry): void {
  if (registry.findByMIME(DOCKERFILE_MIME) === null) {
    registry.addLanguage({
      name: 'Dockerfile',
      displayName: 'Dockerfile',
      mime: DOCKERFILE_MIME,
      filename: /^Dockerfile$/,
      support: new LanguageSupport(StreamLanguage.define(dockerFile))
    });
  }

  const cellLanguageSpec: IEditorLanguage = {
    name: 'layerlab-dockerfile',
    displayName: 'Dockerfile (layerlab cell)',
    mime: DOCKERFILE_CELL_MIME,
    extensions: registry.findByExtension('dockerfile') === null ? ['dockerfile'] : [],
    load: async () => loadCellLanguage()
  };
  if (registry.findByMIME(DOCKERFILE_CELL_MIME) === null) {
    registry.addLanguage(cellLanguageSpec);
  }
}
