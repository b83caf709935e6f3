/** Returns `url` with the password of its userinfo (`redis://user:password@host`) replaced by `<redacted>`, for logs and error messages. */
export function redactRedisUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*:)[^@/]*@/i, "$1<redacted>@");
}
