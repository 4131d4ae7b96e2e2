/**
 * Switch the editor of each `%%dockerfile` code cell to Dockerfile
 * highlighting, and back to the kernel's language when the magic goes.
 */

import { ICellModel } from '@jupyterlab/cells';
import { Notebook, NotebookPanel } from '@jupyterlab/notebook';

import { DOCKERFILE_CELL_MIME, isDockerfileCell } from './language';

/**
 * Watch every code cell of `panel`'s notebook, including cells added later
 * and cells of a model that replaces the current one.
 */
export function watchNotebook(panel: NotebookPanel): void {
  const notebook = panel.content;
  const watched = new WeakSet<ICellModel>();

  const watchCell = (model: ICellModel) => {
    if (model.type !== 'code' || watched.has(model)) {
      return;
    }
    watched.add(model);

    // The notebook sets every code cell's MIME type from the kernel's
    // language_info when a cell is inserted and when the kernel changes,
    // so the cell's type is applied again after each of those changes.
    const update = () => updateMimeType(notebook, model);
    model.contentChanged.connect(update);
    model.mimeTypeChanged.connect(update);
    update();
  };

  const watchModel = () => {
    const model = notebook.model;
    if (model === null) {
      return;
    }
    for (const cell of model.cells) {
      watchCell(cell);
    }
    model.cells.changed.connect((_, change) => {
      change.newValues.forEach(watchCell);
    });
  };

  notebook.modelChanged.connect(watchModel);
  watchModel();
}

function updateMimeType(notebook: Notebook, model: ICellModel): void {
  if (model.isDisposed) {
    return;
  }
  if (isDockerfileCell(model.sharedModel.getSource())) {
    if (model.mimeType !== DOCKERFILE_CELL_MIME) {
      model.mimeType = DOCKERFILE_CELL_MIME;
    }
  } else if (model.mimeType === DOCKERFILE_CELL_MIME) {
    // A MIME type that another extension set is left as it is.
    model.mimeType = notebook.codeMimetype;
  }
}
