import CCairo

/// A cairo PDF surface that writes into memory, measures text and draws laid-out
/// pages. A class because cairo's handles and the byte sink have one owner; it lives
/// inside one `InvoiceDocument.render` call on one thread and never escapes it, so
/// cairo (which is not thread-safe per surface) is never touched concurrently.
final class PDFCanvas {
    private let sink: ByteSink
    private let surface: OpaquePointer?
    private let context: OpaquePointer?

    init(width: Double, height: Double, title: String) {
        let sink = ByteSink()
        self.sink = sink
        surface = cairo_pdf_surface_create_for_stream(
            { closure, data, length in
                guard let closure, let data else { return CAIRO_STATUS_WRITE_ERROR }
                Unmanaged<ByteSink>.fromOpaque(closure).takeUnretainedValue().bytes
                    .append(contentsOf: UnsafeBufferPointer(start: data, count: Int(length)))
                return CAIRO_STATUS_SUCCESS
            }, Unmanaged.passUnretained(sink).toOpaque(), width, height)
        cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_TITLE, title)
        context = cairo_create(surface)
    }

    /// How far `text` advances the pen in `font`: the width layout wraps and aligns by.
    func advance(_ text: String, _ font: Font) -> Double {
        select(font)
        var extents = cairo_text_extents_t()
        cairo_text_extents(context, text, &extents)
        return extents.x_advance
    }

    /// Draws one page's marks and ends the page.
    func draw(_ marks: [Mark]) {
        for mark in marks {
            switch mark {
            case .text(let text, let x, let y, let font, let alignRight):
                let width = advance(text, font)  // also selects the font
                cairo_move_to(context, alignRight ? x - width : x, y)
                cairo_show_text(context, text)
            case .rule(let left, let right, let y):
                cairo_set_line_width(context, 0.6)
                cairo_move_to(context, left, y)
                cairo_line_to(context, right, y)
                cairo_stroke(context)
            }
        }
        cairo_show_page(context)
    }

    /// Closes the document and returns its bytes; the canvas is done after this.
    func finish() throws(PDFError) -> [UInt8] {
        cairo_destroy(context)
        cairo_surface_finish(surface)
        let status = cairo_surface_status(surface)
        cairo_surface_destroy(surface)
        guard status == CAIRO_STATUS_SUCCESS else {
            throw PDFError(message: String(cString: cairo_status_to_string(status)))
        }
        return sink.bytes
    }

    private func select(_ font: Font) {
        cairo_select_font_face(context, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, font.bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        cairo_set_font_size(context, font.size)
    }
}

/// Where the PDF stream lands; written only by cairo during the render that owns it.
private final class ByteSink {
    var bytes: [UInt8] = []
}
