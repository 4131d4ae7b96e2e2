/**
 * The layerlab JupyterLab extension: Dockerfile highlighting for
 * `%%dockerfile` cells and Dockerfiles, and the `Dockerfile` file type.
 * The styles for the kernel's widgets are in style/index.css, which
 * JupyterLab loads with the extension.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { watchNotebook } from './cells';
import { DOCKERFILE_MIME, registerLanguages } from './language';

// Three stacked layers, coloured by the theme's brand colours.
const LAYERS_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16" width="16">
<rect class="jp-icon-brand0 jp-icon-selectable" fill="#0d47a1" x="1" y="10.5" width="14" height="4" rx="1"/>
<rect class="jp-icon-brand1 jp-icon-selectable" fill="#1976d2" x="1" y="6" width="14" height="4" rx="1"/>
<rect class="jp-icon-brand2 jp-icon-selectable" fill="#64b5f6" x="1" y="1.5" width="14" height="4" rx="1"/>
</svg>`;

const dockerfileIcon = new LabIcon({ name: 'layerlab:dockerfile', svgstr: LAYERS_SVG });

/** Registers the Dockerfile languages and the `dockerfile` file type. */
const dockerfileLanguage: JupyterFrontEndPlugin<void> = {
  id: 'layerlab:dockerfile-language',
  description: 'Dockerfile highlighting for Dockerfile and *.dockerfile files.',
  autoStart: true,
  requires: [IEditorLanguageRegistry],
  activate: (app: JupyterFrontEnd, languages: IEditorLanguageRegistry) => {
    registerLanguages(languages);

    if (app.docRegistry.getFileType('dockerfile') === undefined) {
      app.docRegistry.addFileType({
        name: 'dockerfile',
        displayName: 'Dockerfile',
        mimeTypes: [DOCKERFILE_MIME],
        extensions: ['.dockerfile'],
        pattern: '^Dockerfile$',
        fileFormat: 'text',
        contentType: 'file',
        icon: dockerfileIcon
      });
    }
    console.debug('layerlab: Dockerfile languages registered');
  }
};

/** Switches `%%dockerfile` cells of every notebook to Dockerfile highlighting. */
const dockerfileCells: JupyterFrontEndPlugin<void> = {
  id: 'layerlab:dockerfile-cells',
  description: 'Dockerfile highlighting for %%dockerfile notebook cells.',
  autoStart: true,
  requires: [IEditorLanguageRegistry, INotebookTracker],
  activate: (app: JupyterFrontEnd, languages: IEditorLanguageRegistry, tracker: INotebookTracker) => {
    registerLanguages(languages);
    tracker.forEach(watchNotebook);
    tracker.widgetAdded.connect((_, panel) => watchNotebook(panel));
    console.debug('layerlab: watching notebooks for %%dockerfile cells');
  }
};

export default [dockerfileLanguage, dockerfileCells];
