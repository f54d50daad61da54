export { createKeyv, KeyvLayercache, type KeyvLayercacheOptions, type KeyvTagsFor } from './keyv-layercache'
