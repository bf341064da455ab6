-- A pandoc filter that makes a man page of a page of docs/, so the page is
-- the one source of both: pandoc -f gfm -t man -s --lua-filter manpage.lua
-- docs/cli.md. The page's title becomes NAME (with the description below),
-- its intro DESCRIPTION (a code block there SYNOPSIS), its ## sections the
-- man page's sections. Links to other pages of docs/ name the installed
-- file ({docdir} is replaced at build time) or the man page. Tables become
-- lists of entries. The page's note
-- that it is also a man page ("*Also a man page: ...*") is left out.

local stringify = pandoc.utils.stringify

-- the pages made from docs/, by file name
local PAGES = {
  ["cli.md"] = {
    name = "secupload", section = "1",
    whatis = "keys, decryption, verification, key rotation and storage "
      .. "checks for mod_secupload",
  },
  ["configuration.md"] = {
    name = "mod_secupload", section = "5",
    whatis = "Apache httpd module that keeps uploaded files encrypted at "
      .. "rest: directives and set-up",
  },
}

local function page_of(path)
  local base = path:match("([^/]+)$")
  return PAGES[base], base
end

local this_page

-- a link to another page of the docs names the man page or the installed
-- file; one within the page, or to the sources, keeps its text only
local function Link(el)
  local target, text = el.target, stringify(el.content)
  if target:match("^%a[%w+.-]*:") then return nil end   -- a URL: as pandoc does
  local file = target:gsub("#.*$", "")
  if file == "" then return el.content end
  local page = PAGES[file]
  local ref
  if page then
    if page == this_page then return el.content end
    ref = page.name .. "(" .. page.section .. ")"
  elseif file:match("^[%w_-]+%.md$") then
    ref = "{docdir}/docs/" .. file
  else
    return el.content
  end
  if text == file or text == target then return pandoc.Code(ref) end
  local out = el.content
  out:insert(pandoc.Space())
  out:insert(pandoc.Str("(" .. ref .. ")"))
  return out
end

local function upper(inlines)
  return pandoc.walk_inline(pandoc.Span(inlines), {
    Str = function(s) return pandoc.Str(pandoc.text.upper(s.text)) end,
    Code = function(c) return pandoc.Str(pandoc.text.upper(c.text)) end,
  }).content
end

local function inlines_of(blocks)
  local out = pandoc.List()
  for _, b in ipairs(blocks) do
    if #out > 0 then out:insert(pandoc.Space()) end
    if b.content then out:extend(b.content) end
  end
  return out
end

-- a table becomes a list of entries (.TP), one per row, named by its first
-- cell: tbl's text blocks draw spurious warnings from groff 1.22 at some
-- widths, and a list reads as well on any terminal. With more than two
-- columns, each other cell comes under its column's heading.
local function Table(tbl)
  local heads = {}
  for c, cell in ipairs(tbl.head.rows[1] and tbl.head.rows[1].cells or {}) do
    heads[c] = inlines_of(cell.contents)
  end
  local labelled = #tbl.colspecs > 2
  local items = pandoc.List()
  for _, body in ipairs(tbl.bodies) do
    for _, row in ipairs(body.body) do
      local defs = pandoc.List()
      for c = 2, #row.cells do
        local text = inlines_of(row.cells[c].contents)
        if labelled and heads[c] and #heads[c] > 0 then
          local p = pandoc.List({pandoc.Emph(heads[c]), pandoc.Str(":"), pandoc.Space()})
          p:extend(text)
          text = p
        end
        defs:insert(pandoc.Para(text))
      end
      items:insert({inlines_of(row.cells[1].contents), {defs}})
    end
  end
  return pandoc.DefinitionList(items)
end

local function Header(h)
  if h.level == 1 then return {} end   -- the title: NAME stands for it
  h.level = h.level - 1
  if h.level == 1 then h.content = upper(h.content) end
  return h
end

local function is_man_note(b)
  return b.t == "Para" and stringify(b):match("^Also a man page:") ~= nil
end

local function walk(blocks)
  return pandoc.walk_block(pandoc.Div(blocks),
    {Link = Link, Table = Table, Header = Header}).content
end

function Pandoc(doc)
  local base
  this_page, base = page_of(PANDOC_STATE.input_files[1] or "")
  if not this_page then error("manpage.lua: no man page is made of " .. base) end
  doc.meta.title = pandoc.MetaString(this_page.name:upper())
  doc.meta.section = pandoc.MetaString(this_page.section)
  local out = pandoc.List({
    pandoc.Header(1, "NAME"),
    pandoc.Para(this_page.name .. " - " .. this_page.whatis),
  })
  -- the intro, up to the first section: SYNOPSIS from its code, DESCRIPTION
  local i, intro, synopsis = 1, pandoc.List(), pandoc.List()
  while i <= #doc.blocks and not (doc.blocks[i].t == "Header"
                                  and doc.blocks[i].level == 2) do
    local b = doc.blocks[i]
    if b.t == "CodeBlock" and #synopsis == 0 then synopsis:insert(b)
    elseif not (b.t == "Header" and b.level == 1) and not is_man_note(b) then
      intro:insert(b)
    end
    i = i + 1
  end
  if #synopsis > 0 then
    out:insert(pandoc.Header(1, "SYNOPSIS"))
    out:extend(synopsis)
  end
  out:insert(pandoc.Header(1, "DESCRIPTION"))
  out:extend(walk(intro))
  out:extend(walk({table.unpack(doc.blocks, i)}))
  out:insert(pandoc.Header(1, "SEE ALSO"))
  local see = pandoc.List()
  for _, p in pairs(PAGES) do
    if p ~= this_page then see:insert(p.name .. "(" .. p.section .. ")") end
  end
  table.sort(see)
  see:extend({"apache2ctl(8)", "a2enmod(8)", "redis-server(1)"})
  out:insert(pandoc.Para(table.concat(see, ", ") .. "."))
  out:insert(pandoc.Para({pandoc.Str("The"), pandoc.Space(),
    pandoc.Str("documentation:"), pandoc.Space(),
    pandoc.Code("{docdir}/README.md"), pandoc.Space(), pandoc.Str("and"),
    pandoc.Space(), pandoc.Code("{docdir}/docs/"), pandoc.Str(".")}))
  doc.blocks = out
  return doc
end
