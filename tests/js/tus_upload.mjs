// Upload one file with tus-js-client under Node.js and print what happened as JSON.
// usage: node tus_upload.mjs ENDPOINT FILE single|parallel
// single: 1 MiB chunks, each PATCH with Upload-Checksum (sha256 of the chunk, added in
// onBeforeRequest from the Upload-Offset tus-js-client set); parallel: 4 partial uploads,
// concatenated by the server (tus concatenation extension).
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Upload } from 'tus-js-client'

const [endpoint, file, mode] = process.argv.slice(2)
const data = fs.readFileSync(file)
const chunkSize = 1024 * 1024
const fileIds = []
const checksums = []

const options = {
  endpoint,
  metadata: { filename: path.basename(file), filetype: 'application/x-tus-js', origin: 'node' },
  retryDelays: null,
  onAfterResponse (req, res) {
    const fileId = res.getHeader('Ingest-File-Id')
    if (fileId) fileIds.push(fileId)
  },
  onError (error) {
    console.error(String(error))
    process.exit(1)
  }
}
if (mode === 'parallel') {
  options.parallelUploads = 4
} else {
  options.chunkSize = chunkSize
  options.onBeforeRequest = (req) => {
    if (req.getMethod() !== 'PATCH') return
    const offset = Number(req.getHeader('Upload-Offset'))
    const chunk = data.subarray(offset, Math.min(offset + chunkSize, data.length))
    const digest = crypto.createHash('sha256').update(chunk).digest('base64')
    req.setHeader('Upload-Checksum', `sha256 ${digest}`)
    checksums.push(digest)
  }
}

await new Promise((resolve) => {
  options.onSuccess = resolve
  new Upload(data, options).start()
})
console.log(JSON.stringify({ fileIds, checksums: checksums.length }))
