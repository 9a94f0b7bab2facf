// Downloads a file from the API. A plain link cannot carry the Authorization header, so the file is fetched
// with it, kept as a blob, and handed to the browser through a temporary link with a `download` name.

import { request } from './api';

export async function downloadFromApi(path: string, fileName: string): Promise<void> {
  const response = await request('GET', path);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.hidden = true;
  document.body.appendChild(link);
  link.click();
  link.remove();
  // The browser reads the blob after the click returns; free it once that surely happened.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
