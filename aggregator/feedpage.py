"""What a feed looks like when someone opens it in a browser: an XSLT stylesheet.

Atom and RSS documents name this stylesheet in an `<?xml-stylesheet?>`
processing instruction; a browser that applies it shows a page saying what
the feed is and how to subscribe, with its entries, instead of a wall of XML.
Feed readers ignore the instruction. The stylesheet is written to the output
directory (`STYLESHEET_PATH`) and served from the same origin as the feeds,
as browsers require; it needs no script and no other host, and its page keeps
to the same Content-Security-Policy as the topic pages (inline styles only).

Pure: constants and one function that puts the instruction into a document.
"""

from __future__ import annotations

from aggregator.formats import FILE_KINDS

STYLESHEET_PATH = "feed.xsl"
"""Where the stylesheet lives, relative to the output directory."""
STYLESHEET_TYPE = FILE_KINDS[".xsl"].media_type


def with_stylesheet(document: bytes, relative: str) -> bytes:
    """`document` (an XML feed that starts with its XML declaration line), naming the
    stylesheet by a path relative to `relative`, where the document is served; relative,
    so it stays on the origin the feed was fetched from."""
    up = "../" * relative.count("/")
    instruction = f'<?xml-stylesheet type="{STYLESHEET_TYPE}" href="{up}{STYLESHEET_PATH}"?>\n'
    declaration, newline, rest = document.partition(b"\n")
    if not declaration.startswith(b"<?xml ") or not newline:
        return instruction.encode() + document
    return declaration + newline + instruction.encode() + rest


STYLESHEET = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- How a feed of this site looks in a browser: what it is, how to subscribe, its entries. -->
<xsl:stylesheet version="1.0"
  xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
  xmlns:atom="http://www.w3.org/2005/Atom"
  xmlns:dc="http://purl.org/dc/elements/1.1/"
  exclude-result-prefixes="atom dc">
<!-- The html method declares the encoding itself: <meta http-equiv="Content-Type">. -->
<xsl:output method="html" encoding="UTF-8" doctype-system="about:legacy-compat"/>

<xsl:variable name="feed" select="/atom:feed | /rss/channel"/>
<xsl:variable name="kind">
  <xsl:choose>
    <xsl:when test="/atom:feed">Atom</xsl:when>
    <xsl:otherwise>RSS</xsl:otherwise>
  </xsl:choose>
</xsl:variable>
<xsl:variable name="title" select="$feed/atom:title | $feed/title"/>
<xsl:variable name="address" select="$feed/atom:link[@rel='self']/@href"/>
<xsl:variable name="page"
  select="/atom:feed/atom:link[@rel='alternate'][@type='text/html']/@href | /rss/channel/link"/>

<xsl:variable name="lang" select="string(/atom:feed/@xml:lang | /rss/channel/language)"/>

<xsl:template match="/">
<html>
<xsl:attribute name="lang">
  <xsl:choose>
    <xsl:when test="$lang"><xsl:value-of select="$lang"/></xsl:when>
    <xsl:otherwise>en</xsl:otherwise>
  </xsl:choose>
</xsl:attribute>
<head>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<meta name="referrer" content="no-referrer"/>
<xsl:if test="contains($address, '/feeds/')">
<link rel="icon" type="image/svg+xml"
  href="{concat(substring-before($address, '/feeds/'), '/favicon.svg')}"/>
</xsl:if>
<title><xsl:value-of select="$title"/> (<xsl:value-of select="$kind"/> feed)</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:52rem;padding:1rem;color:#1b1b1b;
overflow-wrap:break-word}
a{color:#0645ad;display:inline-block;min-height:24px;max-width:100%}
h1{font-size:1.6rem;margin:.5rem 0}
code{word-break:break-all;background:#f1f1f1;padding:.1rem .3rem;border-radius:.2rem}
.about{background:#fff8d8;border:1px solid #e6d48a;border-radius:.4rem;padding:.6rem .9rem}
.about p{margin:.3rem 0}
.subscribe{margin:.25rem .5rem .25rem 0;padding:.35rem .8rem;border-radius:.4rem;
background:#0645ad;color:#fff;text-decoration:none;font-weight:600}
ol{list-style:none;padding:0;margin:1rem 0}
li{padding:.9rem 0;border-bottom:1px solid #ddd}
h2{font-size:1.1rem;margin:0 0 .2rem;line-height:1.35}
h2 a{display:block}
li p{margin:.25rem 0}
.meta{color:#555;font-size:.9rem}
@media (prefers-color-scheme:dark){body{background:#161616;color:#e8e8e8}a{color:#8ab4f8}
li{border-color:#333}.meta{color:#aaa}.about{background:#2b2714;border-color:#5a5020}
code{background:#2a2a2a}.subscribe{background:#8ab4f8;color:#161616}}
</style>
</head>
<body>
<header>
<div class="about">
<p><strong>This is a news feed</strong> (<xsl:value-of select="$kind"/>), made for feed readers.
To subscribe, copy its address into your feed reader:</p>
<p><code><xsl:value-of select="$address"/></code></p>
</div>
<h1 dir="auto"><xsl:value-of select="$title"/></h1>
<p><xsl:value-of select="$feed/atom:subtitle | $feed/description"/></p>
<xsl:if test="$page">
<p><a class="subscribe" href="{$page}">The page of this feed</a></p>
</xsl:if>
</header>
<main>
<ol>
<xsl:apply-templates select="$feed/atom:entry | $feed/item"/>
</ol>
</main>
</body>
</html>
</xsl:template>

<xsl:template match="atom:entry">
<li>
<xsl:if test="@xml:lang"><xsl:attribute name="lang">
<xsl:value-of select="@xml:lang"/></xsl:attribute></xsl:if>
<h2 dir="auto"><a href="{atom:link[not(@rel) or @rel='alternate'][1]/@href}">
<xsl:value-of select="atom:title"/></a></h2>
<p class="meta"><xsl:if test="atom:author/atom:name">
<bdi><xsl:value-of select="atom:author/atom:name"/></bdi> &#183; </xsl:if>
<time datetime="{substring(atom:published, 1, 10)}">
<xsl:value-of select="substring(atom:published, 1, 10)"/></time></p>
<p dir="auto"><xsl:value-of select="atom:summary"/></p>
</li>
</xsl:template>

<xsl:template match="item">
<li>
<h2 dir="auto"><a href="{link}"><xsl:value-of select="title"/></a></h2>
<p class="meta"><xsl:if test="dc:creator">
<bdi><xsl:value-of select="dc:creator"/></bdi> &#183; </xsl:if>
<xsl:value-of select="substring(pubDate, 6, 11)"/></p>
<!-- An RSS description is HTML. Ours is the excerpt as text, its markup characters escaped;
     or, with coverage (other outlets' articles), paragraphs and a list, every text escaped. -->
<xsl:choose>
<xsl:when test="starts-with(description, '&lt;p&gt;')">
<div dir="auto"><xsl:value-of select="description" disable-output-escaping="yes"/></div>
</xsl:when>
<xsl:otherwise>
<p dir="auto"><xsl:value-of select="description" disable-output-escaping="yes"/></p>
</xsl:otherwise>
</xsl:choose>
</li>
</xsl:template>

</xsl:stylesheet>
"""
"""The stylesheet (XSLT 1.0, which browsers implement) for Atom and RSS alike."""
