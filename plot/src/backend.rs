//! A pass-through drawing backend that can measure text without a font.
//!
//! With plotters' `ab_glyph` font backend, laying out a chart (caption, tick labels) asks
//! the font for text sizes and fails when no font is registered. The SVG backend itself
//! needs no font (the viewer renders `<text>`), so [`Metrics`] wraps a backend and, when
//! `naive` is set, answers size queries with a rough estimate instead. Everything else is
//! forwarded unchanged, so the inner backend's own line, path and text drawing is used.

use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

/// `inner`, with text sizes estimated from the font size alone when `naive`.
pub struct Metrics<DB> {
    pub inner: DB,
    pub naive: bool,
}

/// Rough size of `text` at `size` px: the same estimate plotters uses without a font
/// backend (an em of size/1.24², 0.7 em per character).
pub fn naive_size(text: &str, size: f64) -> (u32, u32) {
    let em = size / 1.24 / 1.24;
    let w = (em * 0.7 * text.chars().count() as f64).round();
    let h = (em * 1.24).round();
    (w as u32, h as u32)
}

type Res<DB> = Result<(), DrawingErrorKind<<DB as DrawingBackend>::ErrorType>>;

impl<DB: DrawingBackend> DrawingBackend for Metrics<DB> {
    type ErrorType = DB::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Res<DB> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Res<DB> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Res<DB> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Res<DB> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Res<DB> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Res<DB> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Res<DB> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Res<DB> {
        self.inner.fill_polygon(vert, style)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Res<DB> {
        self.inner.draw_text(text, style, pos)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        if self.naive {
            Ok(naive_size(text, style.size()))
        } else {
            self.inner.estimate_text_size(text, style)
        }
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Res<DB> {
        self.inner.blit_bitmap(pos, size, src)
    }
}
